"""Refusing the queries of an MRF batch whose evidence has probability zero in some model.

Where every assignment the evidence of model :math:`b` allows scores :math:`-\\infty`, its :math:`\\log Z_b` (and
its best score) is :math:`-\\infty` and the conditional distribution, its marginals and its most probable state
are undefined: :func:`_check_possible` raises :class:`~hybridpgm.errors.EvidenceError` naming those models, for
:mod:`hybridpgm.infer.mrf_exact` (which re-exports it) and
:class:`~hybridpgm.graphs.mrf_distribution.MarkovNetDistribution`.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.train.deferred_checks import check_or_defer

__all__: list = []


def _check_possible(fg: FactorGraph, score: torch.Tensor, query: str | None) -> None:
    """Raise :class:`~hybridpgm.errors.EvidenceError` naming the models (and their evidence) whose ``score``
    (``[B]`` :math:`\\log Z` or best score) is :math:`-\\infty`: every assignment the evidence allows scores
    :math:`-\\infty` (hard constraints written as ``finfo.min`` summing past the range, or ``-inf`` unaries), so
    the conditional distribution, its marginals and its most probable state are undefined.  Nothing for
    ``query=None``.  The check waits for the one host read of :func:`~hybridpgm.fit`'s step where one is running
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`)."""
    if query is None:
        return
    impossible = score.detach() == -math.inf
    check_or_defer(~impossible.any(), lambda: impossible_error(fg, impossible, query), f"{query}: the evidence has "
                   "probability zero (every assignment it allows scores -inf)", EvidenceError)


def impossible_error(fg: FactorGraph, impossible: torch.Tensor, query: str) -> EvidenceError:
    """The :class:`~hybridpgm.errors.EvidenceError` of :func:`_check_possible` for the ``[B]`` bool rows
    ``impossible`` (some true), naming them and the first one's evidence (host reads: an error path)."""
    rows = impossible.nonzero().flatten().tolist()
    valid, cards = fg.valid[rows[0]], fg.cardinalities.tolist()
    seen = [f"{fg.names[v]}={int(valid[v, :c].nonzero()[0])}" for v, c in enumerate(cards)
            if c > 1 and int(valid[v, :c].sum()) == 1]
    evidence = ", ".join(seen) if seen else "none"
    return EvidenceError(f"{query}: the evidence of model(s) {rows[:10]} has probability zero (model {rows[0]}: "
                         f"evidence {evidence}): every assignment it allows scores -inf")
