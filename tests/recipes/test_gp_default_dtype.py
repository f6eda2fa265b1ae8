"""The GP recipes' data under ``torch.set_default_dtype(torch.float64)``: ``load_windows`` and ``load_regression``
made float32 tensors whatever the default: the deep-kernel recipe, whose network is built in the default dtype,
stopped with a ``DataError`` (exit 2), the GP-LSTM recipe trained a float32 model (built from the data), and
``examples/gp_lstm.py`` (its own ``.float()``) stopped with ``DataError`` "LSTM windows have dtype torch.float32,
the network computes in torch.float64".  The data are in torch's default dtype now (float32 by default, as
before)."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.cli import main
from hybridpgm.recipes.gp import load_regression, load_windows

pytest.importorskip("statsmodels")


def _dtypes(data):
    return {key: value.dtype for key, value in data.items() if isinstance(value, torch.Tensor)}


def test_the_recipes_data_follow_the_default_dtype():
    want = load_windows("nile", 6, 20), load_regression(0)
    assert set(_dtypes(want[0]).values()) == set(_dtypes(want[1]).values()) == {torch.float32}  # as before
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = load_windows("nile", 6, 20), load_regression(0)
    finally:
        torch.set_default_dtype(before)
    for a, b in zip(got, want):
        assert set(_dtypes(a).values()) == {torch.float64}
        for key in _dtypes(a):  # the same data, computed in float64
            assert torch.allclose(a[key], b[key].double(), atol=1e-5), key



def test_the_dkl_recipe_trains_under_a_float64_default(tmp_path):
    """Before: ``hybridpgm: error: feature extractor cannot take inputs of shape (2, 10) and dtype torch.float32
    (the network's parameters are torch.float64 ...)``, exit 2 (the network is built in the default dtype)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        code = main(["train", "dkl", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path / "out"),
                     "--no-progress", "--device", "cpu"])
    finally:
        torch.set_default_dtype(before)
    assert code == 0 and (tmp_path / "out" / "metrics.json").exists()
