"""The finiteness check of checkpoints and model files looks at a bounded number of entries at a time
(hybridpgm/train/chunked_finite.py, used by checkpoint.nonfinite_entries).

Before, ``torch.isfinite(t).all()`` ran on each whole tensor: loading a model file of one 268 MB weight peaked
458 MB above the tensors for that check alone.  What is refused, and the message, are unchanged.  Counted by the
largest tensor ``torch.isfinite`` / ``torch.isnan`` is given, never by the clock or the memory.
"""

import math

import pytest
import torch

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.train import chunked_finite
from hybridpgm.train.checkpoint import nonfinite_entries
from tests.train.helpers import cpu_allocations


@pytest.fixture
def largest(monkeypatch):
    """Records the most entries ``torch.isfinite`` and ``torch.isnan`` are given in one call."""
    seen = [0]
    for name in ("isfinite", "isnan"):
        def recorded(t, _check=getattr(torch, name)):
            seen[0] = max(seen[0], t.numel())
            return _check(t)
        monkeypatch.setattr(torch, name, recorded)
    return seen


def test_a_tensor_larger_than_one_chunk_is_checked_a_chunk_at_a_time(largest):
    """The real chunk (2**22 entries): a float16 tensor a few entries longer, its only NaN in the last chunk."""
    t = torch.zeros(chunked_finite.CHUNK + 5, dtype=torch.float16)
    assert nonfinite_entries({"w": t}) == [] and 0 < largest[0] <= chunked_finite.CHUNK
    t[-1] = math.nan
    assert nonfinite_entries({"w": t}) == ["['w']"] and largest[0] <= chunked_finite.CHUNK


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "one row", "strided"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_bad_entry_in_the_last_chunk_is_found_whatever_the_layout(monkeypatch, largest, layout, value):
    """A chunk of 64 entries; a contiguous tensor is read through its flat view, a strided one by blocks of rows
    (no whole copy); every entry is looked at, so the last one's NaN or infinity is refused, and an infinity is
    let through where allowed (``infinite_ok``, ``nan_only``) while a NaN is not."""
    monkeypatch.setattr(chunked_finite, "CHUNK", 64)
    base = torch.zeros(30, 40, dtype=torch.float64)
    t = {"contiguous": base, "transposed": base.t(), "one row": base[None, :, ::2], "strided": base[:, ::3]}[layout]
    assert not t.is_contiguous() or layout == "contiguous"
    assert nonfinite_entries({"w": t}) == [] and largest[0] <= 64
    t[(-1,) * t.dim()] = value
    assert nonfinite_entries({"w": t}) == ["['w']"] and largest[0] <= 64
    nan = math.isnan(value)
    assert nonfinite_entries({"w": t}, infinite_ok=frozenset({"['w']"})) == (["['w']"] if nan else [])
    assert nonfinite_entries({"w": t}, nan_only=True) == (["['w']"] if nan else []) and largest[0] <= 64


def test_load_refuses_a_nan_in_the_last_chunk_of_a_weight_with_the_same_message(tmp_path, monkeypatch, largest):
    monkeypatch.setattr(chunked_finite, "CHUNK", 64)
    path = hybridpgm.save(RBM(40, 30), tmp_path / "rbm.pt")  # save's check is chunked too
    assert hybridpgm.load(path).weight.numel() == 1200 and 0 < largest[0] <= 64
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["weight"][-1, -1] = math.nan
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model file '.*rbm.pt' holds NaN or infinity in \['weight'\]"):
        hybridpgm.load(path)
    assert largest[0] <= 64


@pytest.mark.parametrize("t", [torch.tensor(math.nan), torch.zeros(0, 3), torch.tensor([1 + 1j, complex(0, math.inf)])])
def test_small_zero_d_empty_and_complex_tensors(t):
    assert chunked_finite.all_finite(t) == bool(torch.isfinite(t).all())
    assert chunked_finite.any_nan(t) == bool(torch.isnan(t).any())


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_a_half_precision_tensors_chunks_are_widened_into_one_buffer(monkeypatch, layout):
    """Fails on the old code: each chunk of a float16 tensor was widened into a float32 temporary of its own (here
    66 or 33 chunks of 64 entries), its 0-d sum kept in a list between them; on glibc the heap so fragmented kept
    1 GiB resident after the sum of a 512 MiB tensor.  Now one buffer of a chunk serves every chunk, and the sums
    are unchanged."""
    monkeypatch.setattr(chunked_finite, "CHUNK", 64)
    base = torch.arange(2 * 33 * 64, dtype=torch.float16).reshape(-1, 2) % 7
    t = base if layout == "contiguous" else base[:, 1]
    assert chunked_finite.finite_sums([t]) == [True]
    chunks = [n for n in cpu_allocations(lambda: chunked_finite.finite_sums([t])) if n >= 4 * 64]
    assert len(chunks) == 1, chunks
    assert chunked_finite.wide_sum(t, torch.float32).item() == t.double().sum().item()
    t[-1] = math.nan
    assert chunked_finite.finite_sums([t]) == [False]


def test_a_parameters_chunks_are_widened_into_one_buffer_too(monkeypatch):
    """A parameter (``requires_grad``) of a checkpoint is summed through the one buffer as well: its sum is a flag,
    detached, not a sum to differentiate (:func:`wide_sum` would sum it whole)."""
    monkeypatch.setattr(chunked_finite, "CHUNK", 64)
    p = torch.nn.Parameter(torch.arange(2 * 33 * 64, dtype=torch.float16) % 7)
    chunks = [n for n in cpu_allocations(lambda: chunked_finite.finite_sums([p])) if n >= 4 * 64]
    assert chunks == [4 * 64], chunks  # the buffer of one chunk, no float32 copy of the whole


@pytest.mark.parametrize("transform", ["backward", "forward_ad", "jvp", "grad", "vmap"])
def test_wide_sum_differentiates_and_vectorizes_as_a_sum(monkeypatch, transform):
    """Fails on the reviewed code: the chunks' copies into the buffer (under ``no_grad``, of ``t.detach()``) dropped
    the derivative, silently (a sum without ``grad_fn``, a forward tangent of ``None``, ``torch.func.jvp``'s tangent
    0 and ``torch.func.grad``'s gradient 0 where they are 1 per entry), and under ``torch.func.vmap`` the unbatched
    buffer refused a batched chunk (torch's raw ``RuntimeError``).  Such a ``t`` is summed as ``t.sum`` sums it."""
    import torch.autograd.forward_ad as fwAD

    monkeypatch.setattr(chunked_finite, "CHUNK", 64)
    x = torch.arange(3 * 64, dtype=torch.float16) % 5
    wide = (lambda t: chunked_finite.wide_sum(t, torch.float32))
    ones = torch.ones_like(x)
    if transform == "backward":
        p = x.clone().requires_grad_()
        wide(p).backward()
        torch.testing.assert_close(p.grad, ones, rtol=0, atol=0)
    elif transform == "forward_ad":
        with fwAD.dual_level():
            tangent = fwAD.unpack_dual(wide(fwAD.make_dual(x, ones))).tangent
        assert tangent is not None and tangent.item() == x.numel()
    elif transform == "jvp":
        value, tangent = torch.func.jvp(wide, (x,), (ones,))
        assert value.item() == x.double().sum().item() and tangent.item() == x.numel()
    elif transform == "grad":
        torch.testing.assert_close(torch.func.grad(wide)(x), ones, rtol=0, atol=0)
    else:
        rows = torch.stack([x, 2 * x])
        torch.testing.assert_close(torch.func.vmap(wide)(rows), rows.double().sum(1).float(), rtol=0, atol=0)
