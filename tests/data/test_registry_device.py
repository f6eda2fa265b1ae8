"""``load_dataset`` with torch's default device set: before, the default device ``"meta"`` failed in the
finiteness scan with torch's raw ``RuntimeError: Tensor.item() cannot be called on meta tensors`` (the splits were
made there); a data set is host data, loaded on the CPU whatever the default device."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.data import load_dataset, training_data
from tests.data.test_data import _fake_fashion


@pytest.mark.parametrize("binarize", [None, "static", "dynamic"])
def test_load_dataset_gives_the_same_cpu_splits_under_a_meta_default_device(binarize, tmp_path):
    _fake_fashion(tmp_path)
    for name, root in (("digits", None), ("fashion-mnist", tmp_path)):
        want = load_dataset(name, binarize=binarize, root=root, seed=3)
        torch.set_default_device("meta")
        try:
            got = load_dataset(name, binarize=binarize, root=root, seed=3)
        finally:
            torch.set_default_device(None)
        for split in ("train", "valid", "test"):
            for part in ("x", "y"):
                a, b = getattr(getattr(got, split), part), getattr(getattr(want, split), part)
                assert a.device.type == "cpu" and torch.equal(a, b), (name, split, part)


def test_a_dynamically_binarized_batch_is_read_where_its_data_are_under_a_meta_default_device():
    """Before, the batch's index was made on torch's default device: under ``"meta"`` torch's raw error."""
    data = training_data(load_dataset("digits", binarize="dynamic"), labels=True)
    torch.manual_seed(0)
    want = data.draw([0, 3, 5])
    torch.manual_seed(0)
    torch.set_default_device("meta")
    try:
        got = data.draw([0, 3, 5])
    finally:
        torch.set_default_device(None)
    assert got[0].device.type == "cpu" and torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
