"""Whether a tensor is finite (or free of NaN), checked a bounded number of elements at a time.

``torch.isfinite(t).all()`` on a whole tensor makes temporaries of ``t``'s size (a bool mask and, inside torch,
more): loading a model file of one 268 MB weight peaked 458 MB above the tensors for that check alone, on the
GPU with ``map_location="cuda"``.  :func:`all_finite` and :func:`any_nan` look at :data:`CHUNK` elements at a
time (a view of a contiguous tensor, blocks of rows of a strided one: never a copy of the whole) and stop at the
first chunk that answers, so the temporaries stay under a few times ``CHUNK`` entries of the tensor's dtype, whatever
its size.  They read one flag per chunk on the host: for checks of files, not of training steps
(:mod:`~hybridpgm.train.finite_checks` does those without a synchronisation).

:func:`finite_sums` is the screen run before them: one sum per tensor (float32, float64 for 64-bit tensors, by
:func:`wide_sum`), all read in one host transfer per device.  NaN and infinities propagate through a
sum, so a finite sum proves every entry finite, and only a tensor whose sum is not finite (a true NaN or infinity,
or finite values whose sum overflowed) needs the exact scan.  The sums cost a pass each (a float32 sum of 313,600
entries took 21 us on one CPU thread, ``isfinite(t).all()`` 733 us).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from hybridpgm.tensor_tracking import carries_tangent

__all__ = ["CHUNK", "all_finite", "any_nan", "finite_sums", "wide_sum"]

#: the elements checked at a time (4 MiB of float32: the temporaries of one chunk, which ``isfinite`` makes a few
#: of, about 7 MiB, stay in the process's heap after the check; 16 MiB chunks left 28 MiB there, and were no faster)
CHUNK = 2 ** 20

#: the floating dtypes without an infinity, for which ``torch.isfinite`` is not implemented
_NO_INFINITY = {getattr(torch, name) for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz",
                                                  "float4_e2m1fn_x2") if hasattr(torch, name)}


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of the floating-point or complex tensor ``t`` is finite (no NaN, no infinity): as
    ``bool(torch.isfinite(t).all())``, at most :data:`CHUNK` entries at a time.

    A dtype that has no infinity (float8 ``e4m3fn``, ``e4m3fnuz``, ``e5m2fnuz``, float4 ``e2m1fn_x2``), for which
    torch has no ``isfinite``, is finite where it holds no NaN.

    :param t: the tensor, of any shape (0-d and empty ones included).
    :returns: ``True`` where no entry is NaN or infinite."""
    if t.dtype in _NO_INFINITY:
        return not any_nan(t)
    return all(bool(torch.isfinite(block).all()) for block in _blocks(t, CHUNK))


def any_nan(t: torch.Tensor) -> bool:
    """Whether some entry of the floating-point or complex tensor ``t`` is NaN: as ``bool(torch.isnan(t).any())``,
    at most :data:`CHUNK` entries at a time.

    :param t: the tensor, of any shape.
    :returns: ``True`` where an entry is NaN."""
    return any(bool(torch.isnan(block).any()) for block in _blocks(t, CHUNK))


#: the dtypes :func:`finite_sums` sums (others, such as the float8 types, go to the exact scan), and the sum's dtype
_SUM_DTYPES = {torch.float16: torch.float32, torch.bfloat16: torch.float32, torch.float32: torch.float32,
               torch.float64: torch.float64}


def finite_sums(tensors: Sequence[torch.Tensor]) -> list[bool]:
    r"""For each floating-point or complex tensor, whether its sum is finite: ``True`` proves every entry finite,
    ``False`` leaves the question to :func:`all_finite` / :func:`any_nan` (a NaN or an infinity, or finite entries
    whose sum overflowed: float16 entries of 6e4 do not overflow a float32 sum, float32 entries of 3e38 do).

    Each tensor is summed in float32 (float16, bfloat16, float32, and the parts of complex64 and complex32) or
    float64 (float64, complex128) by :func:`wide_sum` (on a CPU a 16-bit tensor is widened :data:`CHUNK` entries at
    a time into one buffer, never whole); the sums are stacked and read in one transfer per device.  An empty tensor is
    finite; one of another dtype or layout (float8, sparse, conjugate view) gets ``False``.

    :param tensors: the floating-point or complex tensors, on any devices.
    :returns: one flag per tensor, in order."""
    flags = [t.numel() == 0 for t in tensors]
    with torch.no_grad():  # a tensor that requires grad records no graph
        sums = _sums(tensors, flags)
        for found in sums.values():
            groups = [g for g in ([(i, s) for i, s in found if s.dtype == d] for d in (torch.float32, torch.float64))
                      if g]
            finite = torch.isfinite(torch.cat([torch.stack([s for _, s in g]).double() for g in groups])).tolist()
            for (index, _), ok in zip([pair for g in groups for pair in g], finite):  # one read per device
                flags[index] = ok
    return flags


def _sums(tensors: Sequence[torch.Tensor], skipped: list[bool]) -> dict[torch.device, list[tuple[int, torch.Tensor]]]:
    """The 0-d sum of each tensor :func:`finite_sums` sums (not ``skipped``), with its index, by device."""
    sums: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
    for index, t in enumerate(tensors):
        if skipped[index] or t.layout != torch.strided or t.is_meta or (t.is_complex() and (t.is_conj() or t.is_neg())):
            continue
        real = torch.view_as_real(t) if t.is_complex() else t
        wide = _SUM_DTYPES.get(real.dtype)
        if wide is not None:
            sums.setdefault(t.device, []).append((index, wide_sum(real.detach(), wide)))  # a flag: no graph
    return sums


def wide_sum(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    r"""The 0-d sum of the real floating tensor ``t`` in the floating ``dtype`` (float32 for a float16 or bfloat16
    ``t``), without a copy of the whole ``t`` in ``dtype`` and without a host read.

    ``t.sum(dtype=torch.float32)`` of a float16 tensor on a CPU first converts the whole tensor (``aten::to``): a
    temporary of twice its bytes.  A CUDA reduction converts as it loads, and a tensor of ``dtype`` is summed as
    it is; so only a CPU tensor of another dtype and more than :data:`CHUNK` entries is summed in chunks
    (:func:`_blocks`), each converted into one reused buffer of :data:`CHUNK` entries, the chunks' sums added
    into one 0-d accumulator: the temporaries stay at one buffer of :data:`CHUNK` entries of ``dtype``, whatever
    ``t``'s size.  (A new temporary per chunk, its 0-d sum kept in a list between them, left glibc's heap
    fragmented: 1 GiB more resident memory after the sum of a 512 MiB float16 tensor; the reused buffer, 11 MiB.)
    The sum order differs from one pass's by rounding only; NaN and infinities propagate as through any sum.

    :param t: a real floating tensor of any shape (a view: the strided blocks are copied into the buffer); any
        other is summed by ``t.sum(dtype=dtype)`` as it is, and so is a ``t`` the sum must differentiate (one that
        requires grad, carries a forward-mode tangent or is wrapped by a :mod:`torch.func` transform: the buffer's
        copies would drop its derivative, and under ``vmap`` an unbatched buffer cannot take a batched chunk).
    :param dtype: the dtype of the sum.
    :returns: a 0-d tensor of ``dtype`` on ``t``'s device."""
    # the common case first, by the cheapest test (t.device builds an object: 2 us, more than t.numel())
    if t.numel() <= CHUNK or t.dtype == dtype or not t.is_floating_point() or not t.is_cpu \
            or t.requires_grad or carries_tangent(t):
        return t.sum(dtype=dtype)
    with torch.no_grad():  # the buffer records no graph (nor a tangent of forward-mode AD: plain copies)
        buffer, total = torch.empty(CHUNK, dtype=dtype), torch.zeros((), dtype=dtype)
        for block in _blocks(t.detach(), CHUNK):
            part = buffer[:block.numel()].view(block.shape)
            part.copy_(block)
            total.add_(part.sum())
    return total


def _blocks(t: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Views of ``t`` that together hold each entry once, each of at most ``size`` entries: ``t`` itself when small
    enough, slices of its flat view when contiguous, else blocks of its rows (each row, recursively, when one row is
    already too large)."""
    if t.numel() <= size:
        yield t
    elif t.is_contiguous():
        yield from t.view(-1).split(size)
    elif t.shape[0] == 1:
        yield from _blocks(t[0], size)
    else:  # numel > size > 0: at least one dim, and rows of numel // shape[0] entries
        for rows in t.split(max(1, size // (t.numel() // t.shape[0]))):
            yield from _blocks(rows, size)
