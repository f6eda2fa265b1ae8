"""Splitting a batch of evidence rows by the pattern of its inner evidence nodes.

Used by :mod:`hybridpgm.infer.exact`: a node with hard evidence in some rows
only is summed with a per-row indicator, which is as cheap as indexing when
the node is a leaf (the contraction absorbs it into its table) but keeps the
node's neighbourhood in every row when it has children.  Grouping the rows by
which of those inner nodes they observe turns one expensive contraction into
a few indexed ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet
    from hybridpgm.infer.exact import Evidence

__all__ = ["row_groups"]

#: at most this many contractions for one call split by evidence pattern (else: indicators throughout)
_MAX_GROUPS = 16


def row_groups(bn: "BayesNet", ev: "Evidence", targets: set, max_groups: int | None = None):
    """Rows grouped by which *inner* evidence nodes they observe, or ``None`` when there is no need.

    A node with hard evidence in some rows only is summed with a per-row
    indicator; when it is a leaf of the relevant network the contraction
    absorbs that at the cost of indexing (:class:`~hybridpgm.graphs.contraction.AbsorbingPlan`),
    but a node with children keeps its neighbourhood's joint in every row.  So
    rows are grouped by the observation pattern of those inner nodes (at most
    :data:`_MAX_GROUPS` groups), and in each group they are indexed away
    (observed there) or dropped (missing there): a few cheap contractions
    instead of one expensive one.

    :param max_groups: the most groups worth running (default :data:`_MAX_GROUPS`).
    :returns: a list of ``(row indices [n_g], Evidence of those rows)``, or ``None``.
    """
    from hybridpgm.infer.exact import Evidence, _relevant

    if ev.values or not ev.partial:
        return None
    relevant = _relevant(bn, targets)
    inner = [v for v in ev.partial if v not in ev.soft and any(c in relevant for c in bn.child_nodes(v))]
    if not inner:
        return None
    seen = torch.stack([torch.isinf(ev.partial[v]).any(-1) for v in inner], dim=1)  # [N, m]
    patterns, inverse = torch.unique(seen, dim=0, return_inverse=True)
    if patterns.shape[0] > (_MAX_GROUPS if max_groups is None else max_groups):
        return None
    groups = []
    for p, pattern in enumerate(patterns.tolist()):
        idx = (inverse == p).nonzero().flatten()
        sub = Evidence(n=idx.numel(), batched=True, dtype=ev.dtype, device=ev.device,
                       observed={k: t[idx] for k, t in ev.observed.items()},
                       partial={k: t[idx] for k, t in ev.partial.items() if k not in inner},
                       soft=set(ev.soft))
        for v, observed in zip(inner, pattern):
            if observed:
                sub.observed[v] = ev.partial[v][idx].argmax(-1)
        groups.append((idx, sub))
    return groups
