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
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["vmap_refused"]

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
               f"the result's entries, or of its sum (the rows are independent)")

    @functools.wraps(query)
    def named(net, *args, **kwargs):
        with vmap_reads_refused(message):
            return query(net, *args, **kwargs)

    return named  # type: ignore[return-value]
