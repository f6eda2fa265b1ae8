"""``synthetic_series`` and ``load_series`` with torch's default device set: the series' time index and noise were
made on the default device, from a CPU generator.  Under ``"meta"`` ``synthetic_series`` returned a meta tensor
holding no values and ``load_series("elnino")`` stopped with torch's raw error (``.numpy()`` of a meta tensor);
under ``"cuda"``, torch's raw "Expected a 'cuda' device type for generator".  They are host data, as
``load_dataset``'s splits."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.data.timeseries import load_series, synthetic_series

pytest.importorskip("statsmodels")


def _under_meta(fn):
    torch.set_default_device("meta")
    try:
        return fn()
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_synthetic_series_is_the_same_cpu_series_under_a_meta_default_device(dtype):
    want = synthetic_series(50, trend=0.5, seed=3, dtype=dtype)
    got = _under_meta(lambda: synthetic_series(50, trend=0.5, seed=3, dtype=dtype))
    assert got.device.type == "cpu" and got.dtype == dtype and torch.equal(got, want)


def test_a_monthly_series_loads_under_a_meta_default_device():
    want = load_series("elnino")
    got = _under_meta(lambda: load_series("elnino"))
    assert got.values.device.type == "cpu" and torch.equal(got.values, want.values)
    assert torch.equal(got.times, want.times)
