"""Small MRFs whose unary or pairwise tables carry constants: the inputs of BP's shift-invariance tests.

Every entry is a multiple of 1/64 below 4 in size, so an entry plus a constant :math:`|c| \\le 2^{16}` is exact in
float32 (24 significant bits): a float32 answer's error is the algorithm's rounding, not the input's.  Constants
:math:`c_t` added to tables :math:`t` move :math:`\\log Z` (exact or Bethe) by exactly :math:`\\sum_t c_t` and leave
every marginal as it is.

The graphs and the paths :class:`~hybridpgm.infer.BeliefPropagation` takes on them:

* ``"chain"``: 8 variables of 3 and 2 states (padded to 3), a tree: the general path;
* ``"loop"``: a cycle of 6 three-state variables: the general path, loopy;
* ``"grid"``: a 4 x 4 grid of three-state variables: the general path;
* ``"ising"``: a 4 x 4 grid of binary variables: the log-odds path (fused without gradients, eager with them).
"""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.graphs import MarkovNet

KINDS = ("chain", "loop", "grid", "ising")

#: BP's options in these tests: a fixed number of steps, so that float32 and float64 run the same ones
OPTS = {"num_iters": 40, "tol": 0.0}


def _grid_edges(side: int) -> list:
    return ([(r * side + c, r * side + c + 1) for r in range(side) for c in range(side - 1)]
            + [(r * side + c, (r + 1) * side + c) for r in range(side - 1) for c in range(side)])


def shape_of(kind: str) -> tuple[list, list]:
    """``(cards, edges)`` of the graph ``kind``."""
    if kind == "chain":
        return [3, 2] * 4, [(i, i + 1) for i in range(7)]
    if kind == "loop":
        return [3] * 6, [(i, (i + 1) % 6) for i in range(6)]
    return [3 if kind == "grid" else 2] * 16, _grid_edges(4)


def shifted_net(kind: str, dtype: torch.dtype, unary_shifts=None, pair_shifts=None,
                learn: bool = False) -> tuple[MarkovNet, list, list]:
    """``(net, unary tables, pairwise tables)``: the graph ``kind`` in ``dtype``, each unary table ``i`` plus
    ``unary_shifts[i]`` and each pairwise table ``j`` plus ``pair_shifts[j]`` (``None``: no constants); the tables
    are :class:`~torch.nn.Parameter` where ``learn``.  The same draws for every dtype and constant."""
    cards, edges = shape_of(kind)
    g = torch.Generator().manual_seed(7)
    net = MarkovNet({f"x{i}": c for i, c in enumerate(cards)})

    def table(shape, scale, shift):
        t = torch.round(scale * torch.randn(*shape, generator=g, dtype=torch.float64) * 64) / 64
        t = (t + shift).to(dtype)
        return nn.Parameter(t) if learn else t

    pairs = [table((cards[a], cards[b]), 0.5, pair_shifts[j] if pair_shifts else 0.0)
             for j, (a, b) in enumerate(edges)]
    unaries = [table((c,), 1.0, unary_shifts[i] if unary_shifts else 0.0) for i, c in enumerate(cards)]
    for j, ((a, b), t) in enumerate(zip(edges, pairs)):
        net.add_factor(f"p{j}", [f"x{a}", f"x{b}"], t)
    for i, t in enumerate(unaries):
        net.add_factor(f"u{i}", [f"x{i}"], t)
    return net, unaries, pairs


def constants(count: int, c: float, pattern: str) -> list:
    """``count`` constants: all ``c`` (``"same"``) or ``c, -c, c, ...`` (``"alternating"``)."""
    return [c if pattern == "same" or i % 2 == 0 else -c for i in range(count)]
