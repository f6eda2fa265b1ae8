import gzip
import struct

import numpy as np
import pytest
import torch

from hybridpgm.data import (DynamicBinarized, binarize_static, check_features, check_finite, data_loader,
                            find_fashion_mnist, load_dataset, read_idx, training_data)
from hybridpgm.data.fashion_mnist import DEBIAN_PATH, FILES
from hybridpgm.errors import ConfigError, DataError

HAVE_FASHION = all((DEBIAN_PATH / (stem + ".gz")).is_file() for stem in FILES.values())


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes())


def _fake_fashion(folder, n_train=12, n_test=4):
    rng = np.random.RandomState(0)
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.randint(0, 256, (n_train, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", rng.randint(0, 10, n_train))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.randint(0, 10, n_test))


def test_digits_splits_are_fixed_and_scaled():
    d = load_dataset("digits")
    assert (len(d.train), len(d.valid), len(d.test)) == (1257, 180, 360)
    assert d.train.x.dtype == torch.float32 and d.train.x.shape[1] == 64 == d.num_features
    assert 0.0 <= d.train.x.min() and d.train.x.max() <= 1.0
    assert torch.equal(load_dataset("digits").test.y, d.test.y)
    assert set(d.test.y.tolist()) == set(range(10))


def test_static_binarization_is_seeded():
    a = load_dataset("digits", binarize="static", seed=0)
    b = load_dataset("digits", binarize="static", seed=0)
    c = load_dataset("digits", binarize="static", seed=1)
    assert set(a.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)


@pytest.mark.parametrize("binarize", ["static", "dynamic", None])
def test_a_seed_torch_refuses_is_a_config_error_naming_the_seed(binarize):
    """Before, load_dataset(seed=2**64) ended in a bare ValueError from torch.Generator.manual_seed."""
    with pytest.raises(ConfigError, match=r"load_dataset seed must be an integer in \[-2\*\*63, 2\*\*64 - 3\] "
                                          r".*got 18446744073709551616"):
        load_dataset("digits", binarize=binarize, seed=2**64)
    with pytest.raises(ConfigError, match=r"load_dataset seed .* got 18446744073709551614"):  # seed + 2 is 2**64
        load_dataset("digits", binarize=binarize, seed=2**64 - 2)
    edge = load_dataset("digits", binarize=binarize, seed=2**64 - 3)
    assert torch.equal(edge.test.x, load_dataset("digits", binarize=binarize, seed=2**64 - 3).test.x)
    with pytest.raises(ConfigError, match=r"binarize_static seed must be an integer in .* got -9223372036854775809"):
        binarize_static(torch.rand(3, 2), -2**63 - 1)


def test_dynamic_binarization_redraws_the_training_split():
    d = load_dataset("digits", binarize="dynamic")
    data = training_data(d)
    assert isinstance(data, DynamicBinarized) and set(d.test.x.unique().tolist()) == {0.0, 1.0}
    first, second = data.__getitems__(range(200)), data.__getitems__(range(200))
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    # the mean of many draws is the grey level
    draws = torch.stack([data.__getitems__(range(50)) for _ in range(400)]).mean(0)
    assert (draws - d.train.x[:50]).abs().max() < 0.15
    x, y = training_data(d, labels=True)[3]
    assert x.shape == (64,) and y == d.train.y[3]


def test_idx_reader_round_trip_and_errors(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(DataError, match="short"):
        read_idx(tmp_path / "short")


def test_fashion_from_a_user_folder_and_env(tmp_path, monkeypatch):
    _fake_fashion(tmp_path)
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert d.train.x.shape == (12, 784) and d.test.x.shape == (4, 784) and d.image_shape == (28, 28)
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path))
    assert find_fashion_mnist()["test_y"].parent == tmp_path


def test_missing_fashion_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr("hybridpgm.data.fashion_mnist.DEBIAN_PATH", tmp_path / "debian")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "mine")
    message = str(info.value)
    assert str(tmp_path / "mine") in message and "nowhere" in message
    assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist():
    d = load_dataset("fashion-mnist", binarize="static")
    assert (len(d.train), len(d.valid), len(d.test)) == (50000, 10000, 10000)
    assert set(d.test.x[:100].unique().tolist()) == {0.0, 1.0}


def test_bad_inputs():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="binarize"):
        load_dataset("digits", binarize="sometimes")
    with pytest.raises(DataError, match="NaN/inf"):
        check_finite(torch.tensor([[0.0, float("inf")]]), "x")
    with pytest.raises(DataError, match=r"\(3, 5\).*\(N, 64\)"):
        check_features(torch.zeros(3, 5), 64)
    with pytest.raises(DataError, match="range"):
        binarize_static(torch.tensor([2.0]))


def test_data_loader_batches_with_seeded_shuffle():
    x = torch.arange(10.0)
    a = [b.tolist() for b in data_loader(x, 4, shuffle=True, seed=3)]
    b = [b.tolist() for b in data_loader(x, 4, shuffle=True, seed=3)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and len(a[0]) == 4
