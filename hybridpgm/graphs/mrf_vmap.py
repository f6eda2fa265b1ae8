"""The error a :class:`~hybridpgm.graphs.MarkovNet` query gives under :func:`torch.func.vmap`.

A query reads on the host what ``vmap``'s batched tensors cannot give: the evidence's and the values' checks
(whole states ``0..card-1``), the tables' finiteness check, the choice of the inference path (the binary
log-odds path of :class:`~hybridpgm.infer.BeliefPropagation`, the contraction's cost for ``method="auto"``) and
the convergence checks of the iterative algorithms.  torch then fails deep inside with its own
``RuntimeError`` ("vmap: It looks like you're attempting to use a Tensor in some data-dependent control flow",
or ``.item()``).  Yet every query is batched already: ``N`` rows of evidence or values ``{name: [N] tensor}``,
or tables with leading batch dimensions (``batch_shape + (F,) + cards``: ``N`` independent models), are answered
together.  So where torch refuses such a read under ``vmap``, the query raises
:class:`~hybridpgm.errors.ConfigError` naming itself and saying what to pass instead (the pattern of
:mod:`hybridpgm.infer.bn_query_scope` for Bayesian networks).  A ``vmap`` whose batched inputs the query never
touches (``vmap(lambda x: x * net.log_partition())``) runs as before: nothing is refused up front.

Mean field answers ``vmap``'s rows as one batch (:class:`~hybridpgm.infer.MeanField`,
:mod:`hybridpgm.infer.vmap_rows`), so :meth:`~hybridpgm.graphs.MarkovNet.marginals` and
:meth:`~hybridpgm.graphs.MarkovNet.log_partition` with ``method="mean_field"`` run under a ``vmap`` over their
evidence: inside :func:`vmap_rows_read` the compile reads the evidence checks of every row at once
(:func:`host_rows`), as for evidence rows ``[N]`` given together, and a refused value is the
:class:`~hybridpgm.errors.EvidenceError` naming the variable, its row of the ``vmap`` first.  The other methods
and queries read more on the host and are still refused as above.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, Iterator, TypeVar

import torch

from hybridpgm.transform_scope import under_vmap, vmap_reads_refused

__all__ = ["host_rows", "vmap_refused", "vmap_rows_read"]

_ROWS_READ = contextvars.ContextVar("hybridpgm_mrf_vmap_rows_read", default=False)

_F = TypeVar("_F", bound=Callable)


def vmap_refused(query: _F) -> _F:
    """``query`` (a :class:`~hybridpgm.graphs.MarkovNet` method), with torch's ``vmap`` error from a host read
    turned into :class:`~hybridpgm.errors.ConfigError` naming ``MarkovNet.<query>``
    (:func:`~hybridpgm.transform_scope.vmap_reads_refused`); outside ``vmap``, and for hybridpgm's own errors,
    nothing changes."""

    message = (f"MarkovNet.{query.__name__} does not support torch.func.vmap: a query reads its evidence, "
               f"values and tables on the host (their checks, the choice of the inference path), which vmap's batched "
               f"tensors cannot give.  It is batched already: pass the rows as one batch, evidence or values "
               f"{{variable: tensor of shape [N]}} (evidence -1 where a row leaves the variable unobserved), or "
               f"tables with a leading batch dimension (batch_shape + (F,) + cards: N independent models), and it "
               f"answers all N at once (a [N, ...] result); for gradients per row, take torch.autograd.grad of "
               f"the result's entries, or of its sum (the rows are independent).  marginals and log_partition with "
               f"method='mean_field' do run under a vmap over their evidence")

    @functools.wraps(query)
    def named(net, *args, **kwargs):
        with vmap_reads_refused(message):
            return query(net, *args, **kwargs)

    return named  # type: ignore[return-value]


@contextlib.contextmanager
def vmap_rows_read(allowed: bool = True) -> Iterator[None]:
    """Within the block (where ``allowed``), :func:`host_rows` gives every row of a ``vmap``: for a query whose
    algorithm answers the rows as one batch (mean field)."""
    token = _ROWS_READ.set(bool(allowed) or _ROWS_READ.get())
    try:
        yield
    finally:
        _ROWS_READ.reset(token)


def host_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` for a host read: under ``vmap`` inside :func:`vmap_rows_read`, the values of every row
    (:func:`~hybridpgm.infer.vmap_rows.all_rows`, ``[R, *t.shape]``); elsewhere ``t`` itself (a read of a batched
    ``t`` is then torch's refusal, which :func:`vmap_refused` names)."""
    if not (_ROWS_READ.get() and under_vmap()):
        return t
    from hybridpgm.infer.vmap_rows import all_rows

    return all_rows(t)
