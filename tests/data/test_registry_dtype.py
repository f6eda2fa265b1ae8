"""``load_dataset`` under ``torch.set_default_dtype(torch.float64)``: the images were float32 whatever the default,
so the package's own networks built under that default (``DBN.to_classifier``, a plain ``nn.Sequential``) met
torch's raw "mat1 and mat2 must have the same dtype" (``examples/dbn_dbm.py``), and a GP-LSTM's windows a
``DataError``.  The images follow a float64 default now: the float32 values widened (exact), so the same values and
the same seeded binarisation under either default."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.data import load_dataset, training_data
from hybridpgm.energy import DBN
from tests.data.test_data import _fake_fashion


def _under_default(dtype, fn):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return fn()
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("binarize", [None, "static", "dynamic"])
def test_images_follow_a_float64_default_with_the_same_values(binarize, tmp_path):
    _fake_fashion(tmp_path)
    for name, root in (("digits", None), ("fashion-mnist", tmp_path)):
        want = load_dataset(name, binarize=binarize, root=root, seed=3)
        got = _under_default(torch.float64, lambda: load_dataset(name, binarize=binarize, root=root, seed=3))
        for split in ("train", "valid", "test"):
            a, b = getattr(got, split), getattr(want, split)
            assert a.x.dtype == torch.float64 and b.x.dtype == torch.float32, (name, split)
            assert torch.equal(a.x, b.x.double()) and a.y.dtype == torch.int64 and torch.equal(a.y, b.y)
    train = training_data(got)
    assert (train.x if binarize == "dynamic" else train).dtype == torch.float64


@pytest.mark.parametrize("default", [torch.float16, torch.bfloat16])
def test_a_16_bit_default_keeps_float32_images(default):
    """Guard: Fashion-MNIST's grey levels k / 255 would round in 16 bits, so the images stay float32."""
    from hybridpgm.data.registry import image_dtype

    assert _under_default(default, image_dtype) == torch.float32
    assert _under_default(default, lambda: load_dataset("digits").train.x.dtype) == torch.float32


def test_a_network_built_under_the_float64_default_reads_the_loaded_images():
    def run():
        data = load_dataset("digits", binarize="static")
        with torch.no_grad():
            return DBN([64, 8]).to_classifier(10)(data.test.x)
    logits = _under_default(torch.float64, run)
    assert logits.dtype == torch.float64 and logits.shape == (360, 10)
