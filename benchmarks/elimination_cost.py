"""What exact inference must cost for an evidence pattern, independent of any implementation.

Observing a node indexes it away from every factor it is in, so a row that
observes fewer nodes leaves a larger network to sum over.  The yardstick here
is the size of a junction tree [2] of the network conditioned on a row's
observed nodes.  An elimination order :math:`\\pi` [1] forms the clique
:math:`K_v = \\{v\\} \\cup N_\\pi(v)` when it sums out :math:`v`, with
:math:`N_\\pi(v)` its neighbours in the moral graph (plus the fill-in edges)
at that point; the maximal ones are the junction tree's cliques, and

.. math::

    C(\\pi) = \\sum_{K \\in \\max\\{K_v\\}} \\prod_{u \\in K} |u|

is the number of entries of their tables.  One calibration, which gives every
marginal, multiplies messages into each table and sums them out of it a few
times, so its flops are proportional to :math:`C`.  The orders are greedy, the best of
min-fill, weighted min-fill and min-weight [3], each with ties broken by name
and, three more times, at random (an optimal order is NP-hard to find; the
greedy ones can differ by 2x, and any of them is an upper bound on it).

:func:`mixed_over_single` turns this into the figure a benchmark compares
with: the mean over the rows of a mixed batch of :math:`C` for each row's
pattern, over :math:`C` with every evidence node observed.  By this measure, a
ratio above 1.5 means that no exact algorithm whose work follows the
junction tree can answer the mixed rows within 1.5 times the all-observed
rows' time per row (a measure, not a proof: both sides are greedy orders'
sizes, upper bounds on the best ones).

**References**

[1] N. L. Zhang, D. Poole, *A simple approach to Bayesian network computations*, 1994.

[2] S. L. Lauritzen, D. J. Spiegelhalter, *Local computations with probabilities on graphical structures
and their application to expert systems*, 1988.

[3] U. Kjaerulff, *Triangulation of graphs -- algorithms giving small total state space*, 1990.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Mapping, Sequence

__all__ = ["elimination_entries", "mixed_over_single", "moral_graph"]


def moral_graph(parents: Mapping[str, Sequence[str]], observed=()) -> dict[str, set[str]]:
    """Node -> neighbours in the moral graph of the network conditioned on ``observed``.

    Each family (a node and its parents) is a clique; observed nodes are indexed
    away from every family, so they are not in the graph.
    """
    gone = set(observed)
    graph = {v: set() for v in parents if v not in gone}
    for v, pa in parents.items():
        family = [u for u in (v, *pa) if u not in gone]
        for u in family:
            graph[u].update(w for w in family if w != u)
    return graph


def _fill_in(graph, v) -> int:
    nbrs = list(graph[v])
    return sum(1 for i, a in enumerate(nbrs) for b in nbrs[i + 1:] if b not in graph[a])


def _entries(graph, cards, v) -> int:
    return cards[v] * math.prod(cards[u] for u in graph[v])


def _weighted_fill_in(graph, cards, v) -> int:
    nbrs = list(graph[v])
    return sum(cards[a] * cards[b] for i, a in enumerate(nbrs) for b in nbrs[i + 1:] if b not in graph[a])


#: greedy criteria (smallest first): the fill-in edges, their weight (the product of the states they join),
#: and the entries of the clique formed [3]
_HEURISTICS = {
    "min-fill": lambda graph, cards, v: (_fill_in(graph, v), _entries(graph, cards, v)),
    "weighted-min-fill": lambda graph, cards, v: (_weighted_fill_in(graph, cards, v), _entries(graph, cards, v)),
    "min-weight": lambda graph, cards, v: (_entries(graph, cards, v), _fill_in(graph, v)),
}

#: greedy orders per criterion: the first breaks ties by name, the others at random (seeded)
_TRIALS = 4


def _eliminate(graph: dict, cards: Mapping[str, int], order=None, heuristic=None, rng=None) -> int:
    """:math:`C` of ``order``, or of the greedy order of ``heuristic`` (ties broken by name, or at
    random by the ``random.Random`` ``rng``)."""
    graph = {v: set(n) for v, n in graph.items()}
    cliques = []
    pending = list(order) if order is not None else None
    while graph:
        if pending is not None:
            v = pending.pop(0)
        else:
            candidates = sorted(graph)
            if rng is not None:
                rng.shuffle(candidates)
            v = min(candidates, key=lambda u: heuristic(graph, cards, u))
        cliques.append(frozenset(graph[v] | {v}))
        nbrs = graph.pop(v)
        for u in nbrs:
            graph[u].discard(v)
            graph[u].update(w for w in nbrs if w != u)
    maximal = {k for k in cliques if not any(k < other for other in cliques)}
    return sum(math.prod(cards[u] for u in k) for k in maximal)


def elimination_entries(parents: Mapping[str, Sequence[str]], cards: Mapping[str, int], observed=(),
                        order: Sequence[str] | None = None) -> int:
    """:math:`C` for the network conditioned on ``observed``: of ``order`` if given (every unobserved
    node once), else the smaller of the min-fill and min-weight greedy orders.

    :param parents: node -> its parents.
    :param cards: node -> number of states.
    """
    graph = moral_graph(parents, observed)
    if order is not None:
        if sorted(order) != sorted(graph):
            raise ValueError(f"order must list every unobserved node once: {sorted(graph)}, got {list(order)}")
        return _eliminate(graph, cards, order)
    rng = random.Random(0)
    return min(_eliminate(graph, cards, heuristic=h, rng=rng if trial else None)
               for h in _HEURISTICS.values() for trial in range(_TRIALS))


def mixed_over_single(parents: Mapping[str, Sequence[str]], cards: Mapping[str, int],
                      evidence_nodes: Sequence[str], seen: Sequence[Sequence[bool]]) -> dict:
    """The elimination cost of a mixed batch's rows against rows that observe every evidence node.

    :param seen: one row per evidence row, one bool per evidence node: whether the row observes it.
    :returns: ``{"all_observed": C, "mixed_row_mean": mean C over the rows, "ratio_mixed_over_single": ...}``.
    """
    memo = {}
    per_row = []
    for row in seen:
        pattern = tuple(bool(s) for s in row)
        if pattern not in memo:
            memo[pattern] = elimination_entries(parents, cards, [v for v, s in zip(evidence_nodes, pattern) if s])
        per_row.append(memo[pattern])
    single = elimination_entries(parents, cards, evidence_nodes)
    mean = statistics.fmean(per_row)
    return {"all_observed": single, "mixed_row_mean": mean, "ratio_mixed_over_single": mean / single}
