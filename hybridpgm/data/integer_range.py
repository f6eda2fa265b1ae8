r"""Whether integer data lie where a floating dtype holds every integer exactly, without a host read.

A float of :math:`p` significand bits holds every integer in :math:`[-2^p, 2^p]` exactly (:math:`2^{24}` for
float32, :math:`2^{53}` for float64), so integer data are converted to a model's dtype only there
(:func:`~hybridpgm.data.validation.as_model_dtype`).  :func:`outside_exact_range` computes that check's flag on
the data's device: a caller that checks several tensors (a Bayesian network's evidence nodes, its data columns)
reads every flag in one host transfer, on CUDA one synchronisation instead of two per tensor (its minimum and its
maximum, read one by one before).  Only a failure reads again: :func:`integer_range`, the exact range the
message names.
"""

from __future__ import annotations

import torch

__all__ = ["integer_range", "outside_exact_range"]

#: unsigned integer dtypes for which torch implements no ``min``/``max`` (nor comparisons), only conversions
_UNSIGNED_WIDE = tuple(getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n))


def outside_exact_range(x: torch.Tensor, bits: int) -> torch.Tensor:
    r"""A 0-d bool tensor on ``x``'s device, true where some entry of the non-empty integer tensor ``x`` lies outside
    :math:`[-2^{\mathrm{bits}}, 2^{\mathrm{bits}}]`.  Reads nothing: ``torch.aminmax`` and two comparisons of 0-d
    tensors.

    ``uint16``/``uint32``/``uint64`` are compared through ``x.to(torch.int64)`` (torch has no reductions for them);
    a ``uint64`` value :math:`v \ge 2^{63}` wraps to a negative number there, and no float holds it exactly, so a
    negative entry of those dtypes is outside.

    :param x: a non-empty tensor of an integer dtype (``bool`` is no integer here: convert it as it is).
    :param bits: :math:`p`, the significand bits of the target dtype (``11`` for float16, ``24`` for float32)."""
    limit = 2 ** bits
    if x.dtype in _UNSIGNED_WIDE:
        low, high = torch.aminmax(x.to(torch.int64))
        return (low < 0) | (high > limit)
    # compared in int64: a Python int beside a uint8 or int8 tensor takes its dtype (2^24 wraps to 0 in uint8)
    low, high = (m.to(torch.int64) for m in torch.aminmax(x))
    return (low < -limit) | (high > limit)


def integer_range(x: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor ``x``, exactly, as Python ints (host reads: for a message).

    ``uint16``/``uint32``/``uint64`` are read through ``x.to(torch.int64)`` (torch has no reductions
    for them).  A ``uint64`` value :math:`v \\ge 2^{63}` wraps to :math:`v - 2^{64} < 0` there; the
    wrapped values are mapped back, so the range is the true one (and beyond any float's exact range).
    """
    if x.dtype not in _UNSIGNED_WIDE:
        return int(x.min()), int(x.max())
    x = x.to(torch.int64)
    wrapped = x < 0
    if not bool(wrapped.any()):
        return int(x.min()), int(x.max())
    high = 2 ** 64 + int(x[wrapped].max())
    low = int(x[~wrapped].min()) if not bool(wrapped.all()) else 2 ** 64 + int(x[wrapped].min())
    return low, high
