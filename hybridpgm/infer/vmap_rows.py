"""The values of every row of a :func:`torch.func.vmap` call, for a check or a stopping rule that reads them.

Under ``vmap`` a tensor is one row's view of a batch, and torch refuses to read its values on the host (``bool``,
``float``, ``.item()``: "data-dependent control flow").  A check that must hold for every row (no NaN in mean
field's ``q``), or a stopping rule that waits for every row (the largest change of any row), can read the whole
batch instead, in one host read: :func:`all_rows` takes off the transforms' wrappers (``vmap``'s batch dimension,
``grad``'s and ``jvp``'s tracking) and gives the plain tensor underneath, every row's values, without gradients.
That is what a batch of the same rows does: :class:`~hybridpgm.infer.MeanField` stops once every model of its batch
passes its test, and a ``vmap`` over models is then the same batch.  Outside a transform :func:`all_rows` gives the
tensor itself.
"""

from __future__ import annotations

import torch

__all__ = ["all_rows", "first_row_where"]

_F = torch._C._functorch


def _plain(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``(plain, dims)``: the tensor under every functorch wrapper of ``t``, and where each of ``t``'s own dims lies
    in it (the other dims of ``plain`` are the batch dims of the ``vmap`` levels ``t`` is batched at)."""
    dims = list(range(t.dim()))
    while _F.is_functorch_wrapped_tensor(t):
        if _F.is_batchedtensor(t):
            bdim = _F.maybe_get_bdim(t)
            dims = [d + (d >= bdim) for d in dims]
        t = _F.get_unwrapped(t)
    return t, dims


def all_rows(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values in every row of the active ``vmap`` calls, ``[R, *t.shape]`` (``R = 1`` where ``t`` is batched
    at no ``vmap`` level, or outside any transform), detached: for a host read (the module docstring).

    :param t: a tensor, wrapped by :mod:`torch.func` transforms or not."""
    plain, dims = _plain(t.detach())
    with torch._C._DisableFuncTorch():
        rest = [d for d in range(plain.dim()) if d not in dims]
        return plain.detach().permute(rest + dims).reshape(-1, *t.shape)


def first_row_where(mask: torch.Tensor) -> tuple[int, ...]:
    """``(r, *index)`` of the first true entry of a bool ``mask``, ``r`` its row of the ``vmap`` calls (0 outside
    any), read on the host (an error path); ``()`` if none is true.

    :param mask: a bool tensor, wrapped by :mod:`torch.func` transforms or not."""
    rows = all_rows(mask)  # unwrapped first: under nested transforms a wrapper's detach needs them enabled
    with torch._C._DisableFuncTorch():
        hits = rows.nonzero()
        return tuple(hits[0].tolist()) if hits.shape[0] else ()
