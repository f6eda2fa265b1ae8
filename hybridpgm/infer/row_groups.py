"""Splitting a batch of evidence rows by the pattern of some of its evidence nodes, when that pays.

A node with hard evidence in some rows only enters the contraction of
:mod:`hybridpgm.infer.exact` as a per-row indicator vector, so every row
pattern shares one contraction path.  That is as cheap as indexing when the
node is a leaf of the relevant network (the plan absorbs it into its table,
:class:`~hybridpgm.graphs.contraction.AbsorbingPlan`), but a node with
children keeps its neighbourhood's joint in every row, even in the rows that
observe it: the contraction's intermediates carry the node's states *and* the
row dim.  Indexing it away in the rows that observe it can cut the flops per
row many-fold (barley's 67-state ``sort``), at the price of one contraction
per pattern.

:func:`choose_split` decides with a cost model, per query shape and batch:

.. math::

    T(S) = \\sum_{g \\in \\mathrm{patterns}(S)} \\big(c_{\\mathrm{call}} + c_{\\mathrm{step}}\\,s_g
           + c_{\\mathrm{flop}}\\, n_g\\, f_g\\big),

for splitting on a set :math:`S` of such nodes (:math:`n_g` rows, a plan of
:math:`s_g` steps and :math:`f_g` flops per row, from a short opt_einsum
random-greedy search), growing :math:`S` greedily from the empty set (one shared contraction)
while :math:`T` falls.  :func:`row_groups` then forms the groups: in each, a
node of :math:`S` is indexed away (observed there) or dropped (missing there).

Each estimate is a plan search, so the search is bounded: with :math:`G` distinct
row patterns over the inner nodes, at most

.. math:: B = 8 \\min(G, 2\\,g_{\\max}) + 16

estimates per call (:func:`search_budget`; :math:`g_{\\max}` the most groups).
A greedy step tries each distinct grouping of the rows once, its split closed
under the nodes that are observed in all or none of each group's rows (they
split no further and indexing or dropping them only saves work), so three rows
over 60 evidence nodes need a handful of estimates, not thousands.  Where
:math:`B` ends the greedy early, the split by the full pattern (when there are
at most :math:`g_{\\max}` patterns) is costed too, in estimates kept for it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from hybridpgm.graphs.contraction import AbsorbingPlan
from hybridpgm.graphs.path_search import RandomGreedySearch
from hybridpgm.infer.bn_evidence import BATCH, Evidence, network_facts
from hybridpgm.infer.bn_factors import factor_dims, relevant

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["choose_split", "inner_nodes", "row_groups", "search_budget"]

#: at most this many contractions for one call split by evidence pattern
_MAX_GROUPS = 16

#: cost model (seconds on one CPU thread, forward + backward): per contraction call, per plan step, per flop-row
_C_CALL = 4e-4
_C_STEP = 4e-5
_C_FLOP = 1.2e-9

#: random-greedy trials per cost estimate (plain greedy paths can be many times worse than the searched plan)
_ESTIMATE_TRIALS = 4

#: cost estimates kept per network (evidence structures seen), before the memo starts afresh
_MAX_ESTIMATES = 4096

#: cost estimates per distinct row pattern (up to ``2 * max_groups`` patterns) and in all, :func:`search_budget`:
#: an estimate's search is a few to tens of times cheaper than the plan of a query (4 trials, not 128), so the
#: split costs about what planning the patterns one by one would
_SEARCHES_PER_PATTERN = 8
_SEARCHES_EXTRA = 16


def inner_nodes(bn: "BayesNet", ev: Evidence, targets) -> list:
    """Nodes with hard evidence in some rows only that have a child in the relevant network of ``targets``."""
    if ev.values or not ev.partial:
        return []
    facts = network_facts(bn)
    keep = relevant(facts, targets)
    return [v for v in ev.partial if v not in ev.soft and any(c in keep for c in facts.children[v])]


def _seen(ev: Evidence, nodes) -> torch.Tensor:
    """``[N, len(nodes)]`` bool: where each node is observed (its log-indicator has a ``-inf``)."""
    return torch.stack([torch.isinf(ev.partial[v]).any(-1) for v in nodes], dim=1)


def _patterns(seen: torch.Tensor):
    """``(patterns [G, m] bool, inverse [N], counts [G])`` of the rows' observation patterns."""
    m = seen.shape[1]
    if m > 62:
        return torch.unique(seen, dim=0, return_inverse=True, return_counts=True)
    bits = torch.arange(m, device=seen.device)
    codes = (seen.long() << bits).sum(1)  # one integer per pattern: a 1-d unique is much cheaper
    uniq, inverse, counts = torch.unique(codes, return_inverse=True, return_counts=True)
    return ((uniq[:, None] >> bits) & 1).bool(), inverse, counts


def _estimate(bn, facts, observed: frozenset, partial: frozenset, queries: tuple, log_evidence_only: bool):
    """``(steps, flops per row)`` of a contraction with this evidence structure (searched path, memoised);
    infinite flops for a structure no plan can contract (a step over more dims than an einsum names)."""
    memo = bn.plan_cache.memo.setdefault("split_estimates", {})
    key = (observed, partial, queries, log_evidence_only)
    found = memo.get(key)  # one read: another thread may clear the memo at any point (returns what it computed)
    if found is not None:
        return found
    if len(memo) >= _MAX_ESTIMATES:
        memo.clear()
    free = tuple(q for q in queries if q not in observed)
    targets = set(observed) | set(partial) | set(free)
    keep = relevant(facts, targets)
    dims = factor_dims(facts, observed, [v for v in facts.nodes if v in partial], keep)
    own = {v: i for i, v in enumerate(v for v in facts.nodes if v in keep)}
    # as bn_contract.marginals: an indicator only for a query whose factor carries no row dim
    dims += [(BATCH, q) for q in free if q not in partial and dims[own[q]][0] != BATCH] + [(BATCH,)]
    sizes = {d: facts.cards[d] for ds in dims for d in ds if d != BATCH}
    sizes[BATCH] = 4
    try:
        plan = AbsorbingPlan(dims, (BATCH,), sizes, RandomGreedySearch(_ESTIMATE_TRIALS), BATCH)
    except NotImplementedError:  # a step over too many dims: not contractible (the query's plan_for says so)
        found = (0, math.inf)
    else:
        found = (len(plan.main.steps) + sum(len(p.steps) for _, p in plan.groups), plan.opt_cost / sizes[BATCH])
    memo[key] = found
    return found


def search_budget(patterns: int, max_groups: int = _MAX_GROUPS) -> int:
    """The most cost estimates (plan searches) :func:`choose_split` runs for a batch of ``patterns`` distinct row
    patterns of its inner evidence nodes: :math:`B = 8 \\min(G, 2\\,g_{\\max}) + 16`."""
    return _SEARCHES_PER_PATTERN * min(patterns, 2 * max_groups) + _SEARCHES_EXTRA


def _weight(facts, v, keep) -> int:
    """Entries of the tables that hold ``v`` (its own and its relevant children's): the candidates' order."""
    def size(u):
        return math.prod(facts.cards[p] for p in (u, *facts.discrete[u]) if facts.cards[p])
    return size(v) + sum(size(c) for c in facts.children[v] if c in keep)


def choose_split(bn: "BayesNet", ev: Evidence, targets, queries=(), max_groups: int | None = None) -> list:
    """The inner evidence nodes to split the rows on (empty: one shared contraction), by :math:`T(S)`.

    Runs at most :func:`search_budget` cost estimates (cached ones count too, so that a repeated call chooses
    as the first did).  Each greedy step tries one split per distinct grouping of the rows, closed (every inner
    node observed in all or none of each group's rows joins it), candidates in order of promise (the last
    step's estimate, else :func:`_weight`); where the budget ends mid-way, the greedy keeps what it found and,
    with at most ``max_groups`` patterns, the split by the full pattern is costed too.

    :param targets: the nodes the query needs (queried, observed, partially observed).
    :param queries: the queried nodes (those whose factor has no row dim get indicator vectors).
    :param max_groups: the most groups allowed (default :data:`_MAX_GROUPS`).
    """
    inner = inner_nodes(bn, ev, targets)
    if not inner:
        return []
    facts = network_facts(bn)
    max_groups = _MAX_GROUPS if max_groups is None else max_groups
    full, _, counts = _patterns(_seen(ev, inner).cpu())  # [G, m] distinct patterns and their rows
    observed0, queries = frozenset(ev.observed), tuple(queries)
    left = [search_budget(full.shape[0], max_groups) - 1]  # estimates still allowed (the shared one spent)

    def cost(split):  # T(split) for the inner columns ``split`` (at most max_groups groups); None: out of budget
        blocks, inverse, _ = _patterns(full[:, list(split)])
        if blocks.shape[0] > left[0]:
            return None
        left[0] -= blocks.shape[0]
        rows = torch.zeros(blocks.shape[0], dtype=counts.dtype).index_add_(0, inverse, counts)
        partial = frozenset(ev.partial).difference(inner[j] for j in split)
        total = 0.0
        for pattern, n_g in zip(blocks.tolist(), rows.tolist()):
            obs = observed0.union(inner[j] for j, o in zip(split, pattern) if o)
            steps, flops = _estimate(bn, facts, obs, partial, queries, not queries)
            total += _C_CALL + _C_STEP * steps + _C_FLOP * n_g * flops
        return total

    def closed(split, j):  # ``split`` + ``j``, then every other column constant on each group; None: too many groups
        blocks, inverse, _ = _patterns(full[:, list(split) + [j]])
        if blocks.shape[0] > max_groups:
            return None
        per = torch.zeros(blocks.shape[0], full.shape[1], dtype=torch.long).index_add_(0, inverse, full.long())
        size = torch.bincount(inverse, minlength=blocks.shape[0])[:, None]
        const = ((per == 0) | (per == size)).all(0).tolist()
        return tuple(split) + tuple(k for k in range(len(inner)) if const[k] and k not in split)

    steps0, flops0 = _estimate(bn, facts, observed0, frozenset(ev.partial), queries, not queries)
    if _C_FLOP * ev.n * flops0 < _C_CALL + _C_STEP * steps0:
        return []  # a second contraction would cost more than all the flops of the shared one
    keep = relevant(facts, targets)
    promise = {j: (1, -_weight(facts, v, keep), j) for j, v in enumerate(inner)}
    split, best, cut = (), _C_CALL + _C_STEP * steps0 + _C_FLOP * ev.n * flops0, False
    reserve = full.shape[0] if full.shape[0] <= max_groups else 0  # for the full-pattern split
    left[0] -= reserve
    while len(split) < len(inner) and not cut:
        candidates = {}
        for j in range(len(inner)):
            if j not in split and (c := closed(split, j)) is not None:
                candidates.setdefault(c, min((promise[k] for k in c[len(split):]), key=lambda p: p[:2]))
        trials = []
        for c in sorted(candidates, key=candidates.get):
            t = cost(c)
            if t is None:  # out of budget
                cut = True
                break
            trials.append((t, min(c[len(split):]), c))
            for k in c[len(split):]:
                promise[k] = (0, t, k)
        if not trials:
            break
        t, _, c = min(trials)
        if t >= 0.95 * best:  # a clear gain only: the estimates are rough
            break
        split, best = c, t
    left[0] += reserve
    if cut and reserve and len(split) < len(inner):
        t = cost(tuple(range(len(inner))))
        if t is not None and t < 0.95 * best:
            split = tuple(range(len(inner)))
    return [inner[j] for j in split]


def row_groups(bn: "BayesNet", ev: Evidence, targets: set, max_groups: int | None = None, split_on=None):
    """Rows grouped by which of the nodes ``split_on`` they observe, or ``None`` when there is no need.

    :param split_on: nodes with hard evidence in some rows (default: every inner one, :func:`inner_nodes`).
    :param max_groups: the most groups worth running (default :data:`_MAX_GROUPS`); more patterns give ``None``.
    :returns: a list of ``(row indices [n_g], Evidence of those rows)``, or ``None``.  In a group each node
        of ``split_on`` is observed in every row (indexed away) or in none (dropped from the evidence).
    """
    nodes = inner_nodes(bn, ev, targets) if split_on is None else list(split_on)
    if not nodes:
        return None
    patterns, inverse, _ = _patterns(_seen(ev, nodes))
    if patterns.shape[0] > (_MAX_GROUPS if max_groups is None else max_groups):
        return None
    groups = []
    for p, pattern in enumerate(patterns.tolist()):
        idx = (inverse == p).nonzero().flatten()
        sub = ev.subset(idx)
        for v, observed in zip(nodes, pattern):
            lik = sub.partial.pop(v)
            if observed:
                sub.observed[v] = lik.argmax(-1)
        groups.append((idx, sub))
    return groups
