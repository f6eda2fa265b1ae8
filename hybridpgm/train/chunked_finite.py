"""Whether a tensor is finite (or free of NaN), checked a bounded number of elements at a time.

``torch.isfinite(t).all()`` on a whole tensor makes temporaries of ``t``'s size (a bool mask and, inside torch,
more): loading a model file of one 268 MB weight peaked 458 MB above the tensors for that check alone, on the
GPU with ``map_location="cuda"``.  :func:`all_finite` and :func:`any_nan` look at :data:`CHUNK` elements at a
time (a view of a contiguous tensor, blocks of rows of a strided one: never a copy of the whole) and stop at the
first chunk that answers, so the temporaries stay under a few times ``CHUNK`` entries of the tensor's dtype, whatever
its size.  They read one flag per chunk on the host: for checks of files, not of training steps
(:mod:`~hybridpgm.train.finite_checks` does those without a synchronisation).
"""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["CHUNK", "all_finite", "any_nan"]

#: the elements checked at a time (4 MiB of float32: the temporaries of one chunk, which ``isfinite`` makes a few
#: of, about 7 MiB, stay in the process's heap after the check; 16 MiB chunks left 28 MiB there, and were no faster)
CHUNK = 2 ** 20


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of the floating-point or complex tensor ``t`` is finite (no NaN, no infinity): as
    ``bool(torch.isfinite(t).all())``, at most :data:`CHUNK` entries at a time.

    :param t: the tensor, of any shape (0-d and empty ones included).
    :returns: ``True`` where no entry is NaN or infinite."""
    return all(bool(torch.isfinite(block).all()) for block in _blocks(t, CHUNK))


def any_nan(t: torch.Tensor) -> bool:
    """Whether some entry of the floating-point or complex tensor ``t`` is NaN: as ``bool(torch.isnan(t).any())``,
    at most :data:`CHUNK` entries at a time.

    :param t: the tensor, of any shape.
    :returns: ``True`` where an entry is NaN."""
    return any(bool(torch.isnan(block).any()) for block in _blocks(t, CHUNK))


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
