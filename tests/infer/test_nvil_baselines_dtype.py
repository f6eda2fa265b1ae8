"""NVIL's baseline networks were drawn in torch's default dtype (and on its default device), then converted to
the model's: the same float32 SBN and seed gave other baselines, and moved torch's global stream differently, when
the default dtype was float64; a float64 SBN under the float32 default got baselines of float32 resolution; under
a ``"meta"`` default device the construction stopped with torch's raw "Cannot copy out of meta tensor".  They are
drawn in the model's dtype on the host now, whatever torch's defaults."""

from __future__ import annotations

import pytest
import torch

import hybridpgm


def _construct(model_dtype, default_dtype=torch.float32, default_device=None):
    """``(baseline tensors, the global stream's next draw)`` of an NVIL built for an SBN of ``model_dtype``
    (built under the float32 default) with torch's default dtype and device set at construction."""
    torch.manual_seed(0)
    sbn = hybridpgm.SigmoidBeliefNet([8, 4, 2]).to(model_dtype)
    before = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    torch.set_default_device(default_device)
    try:
        torch.manual_seed(1)
        nvil = hybridpgm.NVIL(sbn.model, sbn.guide)
        after = torch.rand(1, dtype=torch.float32, device="cpu")
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(before)
    return [t.detach().clone() for t in (*nvil.baselines.parameters(), *nvil.baselines.buffers())], after


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float64])
def test_the_baselines_and_the_stream_do_not_depend_on_the_default_dtype(model_dtype):
    want, want_next = _construct(model_dtype, torch.float32)
    got, got_next = _construct(model_dtype, torch.float64)
    assert all(t.dtype == model_dtype for t in want + got)
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and torch.equal(got_next, want_next)


def test_a_float64_model_gets_baselines_drawn_in_float64():
    weights = _construct(torch.float64)[0]
    assert any(not torch.equal(w, w.float().double()) for w in weights)  # not float32 values widened


def test_the_baselines_are_built_under_a_meta_default_device():
    want, want_next = _construct(torch.float32)
    got, got_next = _construct(torch.float32, default_device="meta")
    assert all(a.device.type == "cpu" and torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(got_next, want_next)
