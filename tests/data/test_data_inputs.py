"""Bad inputs to hybridpgm.data raise hybridpgm.errors exceptions naming the argument, never torch's own errors."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from hybridpgm.data import (
    DynamicBinarized, binarize_static, data_loader, find_fashion_mnist, load_dataset, make_windows, read_idx,
    split_series, synthetic_series, training_data,
)
from hybridpgm.data.hmm_tagging import random_hmm, sample_hmm
from hybridpgm.data.toy import ring_centers, ring_of_gaussians
from hybridpgm.errors import ConfigError, DataError


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(dtype).tobytes())


def _fashion(folder, images, code=0x08):
    folder.mkdir(exist_ok=True)
    for split in ("train", "t10k"):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, code)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.zeros(len(images)))
    return folder


@pytest.mark.parametrize("name", [["digits"], {"digits": 1}])
def test_an_unhashable_dataset_name_lists_the_known_ones(name):
    with pytest.raises(DataError, match=r"unknown dataset .*available: \['digits', 'fashion-mnist'\]"):
        load_dataset(name)


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_a_non_integer_seed_is_refused(seed):
    with pytest.raises(ConfigError, match="load_dataset seed must be an integer"):
        load_dataset("digits", binarize="static", seed=seed)
    with pytest.raises(ConfigError, match="binarize_static seed must be an integer"):
        binarize_static(torch.rand(3, 2), seed)
    with pytest.raises(ConfigError, match="data_loader seed must be an integer"):
        data_loader(torch.zeros(3, 2), seed=seed)
    with pytest.raises(ConfigError, match="synthetic_series seed must be an integer"):
        synthetic_series(5, seed=seed)


def test_root_is_refused_for_the_bundled_digits(tmp_path):
    with pytest.raises(ConfigError, match="'digits' is bundled"):
        load_dataset("digits", root=tmp_path)


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_a_named_fashion_root_is_never_replaced_by_another_copy(kind, tmp_path, monkeypatch):
    # another complete copy where the search would otherwise look next
    monkeypatch.setenv("HYBRIDPGM_DATA", str(_fashion(tmp_path / "elsewhere", np.zeros((2, 28, 28)))))
    root = tmp_path / "mine"
    if kind == "file":
        root.write_text("x")
    elif kind == "empty":
        root.mkdir()
    word = {"missing": "does not exist", "file": "is a file", "empty": "lacks train-images-idx3-ubyte"}[kind]
    with pytest.raises(DataError, match=word) as info:
        load_dataset("fashion-mnist", root=root)
    assert str(root) in str(info.value) and "apt-get install dataset-fashion-mnist" in str(info.value)
    with pytest.raises(DataError, match=word):
        find_fashion_mnist(root)


@pytest.mark.parametrize("images,code,word", [
    (np.zeros((0, 28, 28)), 0x08, r"shape \(0, 28, 28\), expected \(N, 28, 28\) with N >= 1"),
    (np.zeros((3, 5, 5)), 0x08, r"shape \(3, 5, 5\), expected \(N, 28, 28\)"),
    (np.full((3, 28, 28), 0.5), 0x0D, r"holds >f4 values, expected unsigned bytes"),
], ids=["empty", "5x5", "float"])
def test_fashion_files_of_the_wrong_format(images, code, word, tmp_path):
    root = _fashion(tmp_path / "fm", images, code)
    with pytest.raises(DataError, match=word):
        load_dataset("fashion-mnist", root=root)


def test_read_idx_of_a_non_path():
    with pytest.raises(DataError, match=r"read_idx needs a file path \(str or a PathLike of str\), got NoneType"):
        read_idx(None)


def test_read_idx_of_a_pathlike_of_bytes():
    class BytesPath:
        def __fspath__(self):
            return b"/tmp/images.idx"

    with pytest.raises(DataError, match="got BytesPath"):
        read_idx(BytesPath())


def test_dynamic_binarized_checks_its_shapes():
    with pytest.raises(DataError, match="0-d tensor"):
        DynamicBinarized(torch.tensor(0.5))
    with pytest.raises(DataError, match=r"labels y: got shape \(3,\), expected a tensor of 4 labels"):
        DynamicBinarized(torch.rand(4, 2), torch.zeros(3))
    with pytest.raises(DataError, match="labels y: got a list"):
        DynamicBinarized(torch.rand(4, 2), [0, 1, 2, 3])


def test_training_data_needs_an_image_dataset():
    with pytest.raises(DataError, match="training_data needs an ImageDataset.*got str"):
        training_data("digits")


@pytest.mark.parametrize("n", [2.0, 2.5, True, "3"])
def test_ring_sizes_must_be_integers(n):
    with pytest.raises(ConfigError, match=f"ring_of_gaussians n must be a non-negative integer, got {n!r}"):
        ring_of_gaussians(n)
    with pytest.raises(ConfigError, match="ring_of_gaussians num_modes must be a positive integer"):
        ring_of_gaussians(5, num_modes=n)
    with pytest.raises(ConfigError, match="ring num_modes must be a positive integer"):
        ring_centers(n)


@pytest.mark.parametrize("modes", [0, -1])
def test_ring_of_gaussians_with_no_modes(modes):
    with pytest.raises(ConfigError, match="num_modes must be a positive integer"):
        ring_of_gaussians(5, num_modes=modes)


@pytest.mark.parametrize("value", [math.nan, math.inf, "2"])
def test_ring_scales_must_be_finite_positive_numbers(value):
    with pytest.raises(ConfigError, match="ring radius must be a finite number > 0"):
        ring_centers(4, radius=value)
    with pytest.raises(ConfigError, match="ring_of_gaussians std must be a finite number > 0"):
        ring_of_gaussians(5, std=value)


def test_hmm_sizes_must_be_integers():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(DataError, match="integer numbers >= 2 of labels and symbols, got 2.0 and 3"):
        random_hmm(2.0, 3, generator=g)
    with pytest.raises(DataError, match="integer numbers >= 2 of labels and symbols, got 2 and '3'"):
        random_hmm(2, "3", generator=g)
    hmm = random_hmm(3, 4, generator=g)
    for num_seqs in (-1, 2.0, True):
        with pytest.raises(DataError, match="sample_hmm num_seqs must be an integer >= 0"):
            sample_hmm(hmm, num_seqs, 1, 2, generator=g)
    for lengths in ((1.0, 2), (1, 2.5), ("1", 2)):
        with pytest.raises(DataError, match="sequence lengths need integers"):
            sample_hmm(hmm, 3, *lengths, generator=g)


@pytest.mark.parametrize("window,horizon", [(True, 1), (3, True)])
def test_windows_refuse_bool(window, horizon):
    with pytest.raises(DataError, match="window and horizon must be positive integers"):
        make_windows(torch.randn(20), window, horizon)


@pytest.mark.parametrize("num_test", [2.0, 2.5, True, "3"])
def test_split_series_needs_an_integer(num_test):
    with pytest.raises(DataError, match=f"num_test={num_test!r} must be an integer between 1 and 19"):
        split_series(torch.randn(20), num_test)


def test_split_series_needs_a_tensor():
    # before: "series has shape list, expected (L,) or (L, D)", the type printed as a shape
    with pytest.raises(DataError, match=r"series is a list of length 3, not a torch\.Tensor: pass torch\.tensor"):
        split_series([1.0, 2.0, 3.0], 1)


@pytest.mark.parametrize("kwargs,word", [
    (dict(length=2.0), "length must be a positive integer"),
    (dict(length=True), "length must be a positive integer"),
    (dict(length="3"), "length must be a positive integer"),
    (dict(length=5, period=math.nan), "period must be a finite number > 0"),
    (dict(length=5, period=math.inf), "period must be a finite number > 0"),
    (dict(length=5, period="3"), "period must be a finite number > 0"),
    (dict(length=5, noise=math.nan), "noise must be a finite number >= 0"),
    (dict(length=5, noise=math.inf), "noise must be a finite number >= 0"),
    (dict(length=5, trend=math.nan), "trend must be a finite number"),
])
def test_synthetic_series_settings(kwargs, word):
    with pytest.raises(DataError, match=f"synthetic_series {word}"):
        synthetic_series(**kwargs)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, "4"])
def test_data_loader_batch_size(batch_size):
    with pytest.raises(ConfigError, match=f"data_loader batch_size must be a positive integer, got {batch_size!r}"):
        data_loader(torch.zeros(4, 2), batch_size=batch_size)
