"""Evidence of probability zero in an exact Bayesian-network query: the error naming the caller's rows.

A query answers a batch of evidence rows :math:`e_1, \\dots, e_N` in parts: rows grouped by evidence pattern
(:mod:`~hybridpgm.infer.row_groups`), chunks that fit the memory budget
(:func:`~hybridpgm.infer.bn_contract.in_row_chunks`), rows redone in log space
(:func:`~hybridpgm.infer.bn_spaces.with_rows_redone`).  A part that meets a row with :math:`p(e_n) = 0` sees
only its own rows; the error should name every impossible row of the caller's batch, by its index there.  Each
part's :class:`~hybridpgm.infer.bn_evidence.Evidence` keeps the caller's batch (``whole``), so on that error path
alone :func:`check_possible` computes :math:`\\log p(e_n)` of the whole batch
(:func:`~hybridpgm.infer.bn_contract.log_evidence_rows`, which returns :math:`-\\infty` for an impossible row and
raises nothing) and names all its rows of :math:`-\\infty`: the first :data:`SHOWN` and their count.  A query
whose evidence is possible pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.infer.bn_evidence import Evidence, network_facts
from hybridpgm.infer.bn_factors import relevant

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["SHOWN", "check_possible", "impossible_rows"]

#: how many impossible rows an error lists (then ``...`` and their count)
SHOWN = 10


def impossible_rows(bn: "BayesNet", ev: Evidence) -> list[int]:
    """The rows of ``ev`` whose evidence has probability zero (:math:`\\log p(e_n)` not finite), ascending.

    One :func:`~hybridpgm.infer.bn_contract.log_evidence_rows` over the nodes the evidence touches and their
    ancestors (the query nodes add nothing: their relevant network sums to one without evidence below them).
    """
    from hybridpgm.infer.bn_contract import log_evidence_rows  # bn_contract imports this module

    facts = network_facts(bn)
    targets = set(ev.observed) | set(ev.partial) | {v for v in ev.values if v in facts.cards}
    with torch.no_grad():
        log_z = log_evidence_rows(bn, ev, relevant(facts, targets))
    return (~torch.isfinite(log_z)).nonzero().flatten().tolist()


def check_possible(value: torch.Tensor, what: str, row_ids: torch.Tensor | None = None,
                   bn: "BayesNet | None" = None, ev: Evidence | None = None) -> None:
    """Raise :class:`EvidenceError` naming the rows whose ``value`` is not finite (evidence of probability 0).

    :param value: ``[N, ...]``: a row is impossible where any entry is not finite.
    :param str what: what is undefined (``"the posterior"``).
    :param row_ids: ``[N]`` the rows' indices in the caller's batch (default: ``0..N-1``).
    :param bn: with ``ev``, the network and the evidence of ``value``'s rows: when those rows are a part of the
        caller's batch (``ev.whole``), the error names every impossible row of the whole batch
        (:func:`impossible_rows`), not only this part's.
    """
    bad = ~torch.isfinite(value.detach()).reshape(value.shape[0], -1).all(-1) if value.dim() and value.numel() else None
    if bad is None or not bad.any():
        return
    rows = bad.nonzero().flatten()
    rows = (row_ids[rows] if row_ids is not None else rows).tolist()
    if bn is not None and ev is not None and ev.whole is not None:
        rows = sorted(set(rows) | set(impossible_rows(bn, ev.whole)))
    more = f" ... ({len(rows)} rows)" if len(rows) > SHOWN else ""
    raise EvidenceError(f"evidence has probability zero under the model in row(s) {rows[:SHOWN]}{more}; "
                        f"{what} is undefined")
