"""Rows of a batched :class:`~hybridpgm.graphs.factor_graph.FactorGraph`, and a query run a chunk of rows at a time.

Every model (batch row) :math:`b` of an exact MRF query is answered from its own tables alone, so a batch of
:math:`B` rows can be split into :math:`k = \\lceil B / r \\rceil` chunks of at most :math:`r` consecutive rows
(:func:`row_chunks`: their sizes differ by one at most) and the answers joined along the rows:
:mod:`hybridpgm.infer.mrf_exact` does so where the whole batch's largest intermediate would exceed
:data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` but one model's fits, so that a row's answer does not depend
on how many rows share the call.  :func:`by_rows` is that choice for every query (log-partition, marginals,
MAP, entropy): one call where the batch fits, else chunks whose joined answers are checked once, naming batch rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.infer.mrf_possible import _check_possible
from hybridpgm.tensor_tracking import carries_tangent

__all__ = ["by_rows", "carries_tangents", "in_row_chunks", "model_bytes", "needs_graph", "row_chunks", "rows_of"]


def rows_of(fg: FactorGraph, rows: slice) -> FactorGraph:
    """The models ``rows`` (a slice of consecutive batch rows) of ``fg``: views of its unaries, valid states and
    log-potentials (no copy), batch shape ``(len(rows),)``.

    :param FactorGraph fg: the batch, ``B`` rows.
    :param slice rows: ``slice(start, stop)``, ``0 <= start < stop <= B``.
    """
    groups = [dataclasses.replace(g, log_potentials=g.log_potentials[rows]) for g in fg.groups]
    unary = fg.unary[rows]
    return dataclasses.replace(fg, unary=unary, valid=fg.valid[rows], groups=groups,
                               batch_shape=torch.Size([unary.shape[0]]))


def row_chunks(batch: int, most: int) -> list[slice]:
    """``batch`` rows split into the fewest slices of consecutive rows of at most ``most`` rows each,
    :math:`k = \\lceil batch / most \\rceil`, as even as can be: the first :math:`batch \\bmod k` of
    :math:`\\lceil batch / k \\rceil` rows, the others of :math:`\\lfloor batch / k \\rfloor`.

    :param int batch: the rows, at least one.
    :param int most: the most rows a chunk may hold, at least one.
    """
    k = math.ceil(batch / most)
    size, extra = divmod(batch, k)
    stops = [(i + 1) * size + min(i + 1, extra) for i in range(k)]
    return [slice(stop - size - (i < extra), stop) for i, stop in enumerate(stops)]


def in_row_chunks(fg: FactorGraph, most: int, fn: Callable[[FactorGraph, slice], tuple],
                  dims: Sequence[int]) -> tuple:
    """``fn(rows_of(fg, rows), rows)`` for the chunks of :func:`row_chunks`, each output joined along its row dim.

    :param FactorGraph fg: the batch.
    :param int most: the most rows one call of ``fn`` may take.
    :param fn: returns a tuple of tensors (or ``None``, kept as ``None``) whose row dims are ``dims``.
    :param dims: the row dim of each output of ``fn``.
    :returns: the joined outputs, in the order ``fn`` returns them.
    """
    parts = [fn(rows_of(fg, rows), rows) for rows in row_chunks(fg.batch_size, most)]
    return tuple(None if p[0] is None else torch.cat(p, dim=d) for p, d in zip(zip(*parts), dims))


def by_rows(fg: FactorGraph, most: int, fn: Callable[[FactorGraph, slice, str | None], tuple],
            dims: Sequence[int], query: str | None, score: int = 0) -> tuple:
    """A query of the batch ``fg`` (``B`` rows), at most ``most`` rows per call: ``fn(fg, slice(0, B), query)``
    where ``most >= B`` (one call, as unchunked, which checks the evidence itself); else :func:`in_row_chunks` of
    ``fn(rows_of(fg, rows), rows, None)``, then one :func:`~hybridpgm.infer.mrf_possible._check_possible` of the
    joined output ``score`` (``[B]`` :math:`\\log Z` or best score), so an error names the batch row, not the
    chunk's.

    :param FactorGraph fg: the batch.
    :param int most: the most rows one call of ``fn`` may take (``_rows_per_call`` of
        :mod:`hybridpgm.infer.mrf_exact`).
    :param fn: ``fn(models, rows, query)`` returns a tuple of tensors whose row dims are ``dims``; ``query`` is
        the name an evidence error gives, or ``None``: no check.
    :param dims: the row dim of each output of ``fn``.
    :param query: the caller, as an evidence error names it (``None``: no check).
    :param int score: which output is checked for evidence of probability zero.
    :returns: ``fn``'s outputs for the whole batch.
    """
    if most >= fg.batch_size:
        return fn(fg, slice(0, fg.batch_size), query)
    out = in_row_chunks(fg, most, lambda sub, rows: fn(sub, rows, None), dims)
    _check_possible(fg, out[score], query)
    return out


def model_bytes(plan, dtype: torch.dtype) -> int:
    """Bytes of one model's largest intermediate in ``plan`` (a
    :class:`~hybridpgm.graphs.contraction.ContractionPlan`) of ``dtype``; float32 counted as float64, which it may
    run in (:func:`~hybridpgm.infer.mrf_operands.probability_dtype`)."""
    itemsize = torch.float64.itemsize if dtype == torch.float32 else dtype.itemsize
    return getattr(plan, "largest_intermediate", 0) * itemsize


def needs_graph(fg: FactorGraph, unary: torch.Tensor) -> bool:
    """Whether a result computed from ``unary`` and ``fg``'s log-potentials must carry their gradient (autograd
    on, and one of them requires it): then the whole batch is one contraction."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in [unary] + [g.log_potentials for g in fg.groups])


def carries_tangents(fg: FactorGraph, unary: torch.Tensor) -> bool:
    """Whether ``unary`` or ``fg``'s log-potentials carry a forward-mode derivative
    (:func:`~hybridpgm.tensor_tracking.carries_tangent`: :func:`torch.func.jvp`, :func:`torch.func.jacfwd`, a
    :mod:`torch.autograd.forward_ad` dual), which needs no ``requires_grad``: a result computed from them is then
    not detached (:func:`~hybridpgm.tensor_tracking.without_graph`), whatever :func:`needs_graph` says.  The rows
    may still run in chunks: forward mode keeps no graph, so a chunk's memory is freed before the next."""
    return any(carries_tangent(t) for t in [unary] + [g.log_potentials for g in fg.groups])
