r"""A consistent assignment from max-product messages: variables decided one layer at a time.

Decoding each variable by the argmax of its own max-marginal gives a most
probable assignment on a tree only where those argmaxes are unique.  Where
they tie, the choices need not agree: two variables rewarded for differing
both tie between their states, and both take state 0.  Decoding in order
fixes that [1, §13.3]: with :math:`D` the variables decided so far, the next
variable :math:`v` takes

.. math::

    x_v = \operatorname*{arg\,max}_{x_v} \Big(\theta_v(x_v) + \sum_{f \ni v}
        \max_{x_{f \setminus v \setminus D}} \big[\theta_f(x_f)
        + \sum_{u \in f \setminus v \setminus D} n_{u \to f}(x_u)\big]_{x_D\ \mathrm{fixed}}\Big),

the factor's max-product message to :math:`v` with the decided arguments held
at their values (an indicator in place of their incoming messages
:math:`n_{u \to f}`).  On a tree, with :math:`D` connected, that is
:math:`v`'s max-marginal given :math:`x_D`, so every choice extends to a most
probable assignment.

The order is breadth-first over the interaction graph (each connected part
from its lowest-numbered variable), and a variable's *layer* is one more than
the largest layer of its neighbours earlier in that order.  Neighbours are
never in one layer, and on a tree the variables of one layer are separated by
the ones decided before them, so a whole layer is decided in one vectorised
step: a grid of side :math:`s` takes :math:`2s - 1` steps, each over the
factors that touch its layer only (every factor is visited once per layer of
its variables).  On loopy graphs max-product BP is approximate, and so is this
decoding.

**References**

[1] D. Koller, N. Friedman, *Probabilistic Graphical Models*, 2009.
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.infer.bp_engine import FlatGraph, _kary, _pairwise

__all__ = ["decode_in_layers", "layers"]


def layers(fg: FactorGraph) -> list[int]:
    """The layer of each variable of ``fg`` (see the module docstring); a variable in no factor is in layer 0."""
    return _layers(fg.num_vars, [g.variables.tolist() for g in fg.groups])


def _layers(V: int, scopes_by_group: list) -> list[int]:
    nbrs = [[] for _ in range(V)]
    for scopes in scopes_by_group:
        for scope in scopes:
            for u in scope:
                nbrs[u].extend(w for w in scope if w != u)
    nbrs = [sorted(set(n)) for n in nbrs]
    position, order = [-1] * V, []
    for root in range(V):
        if position[root] >= 0:
            continue
        position[root] = len(order)
        order.append(root)
        head = len(order) - 1
        while head < len(order):
            for w in nbrs[order[head]]:
                if position[w] < 0:
                    position[w] = len(order)
                    order.append(w)
            head += 1
    layer = [0] * V
    for u in order:
        pu = position[u]
        layer[u] = max((layer[w] + 1 for w in nbrs[u] if position[w] < pu), default=0)
    return layer


class _Layer:
    """One layer's index tensors: its variables, the edges into them, and per factor group the factors that
    touch it (with the positions, in those factors' stacked edges, of the edges into the layer)."""

    def __init__(self, variables, edges, groups):
        self.variables, self.edges, self.groups = variables, edges, groups


def _plan(fg: FactorGraph, flat: FlatGraph) -> list[_Layer]:
    scopes_by_group = [g.variables.tolist() for g in fg.groups]
    layer = _layers(fg.num_vars, scopes_by_group)
    count = max(layer, default=-1) + 1
    dev = fg.unary.device
    members = [[] for _ in range(count)]
    slot = [0] * len(layer)  # a variable's place within its layer
    for v, ell in enumerate(layer):
        slot[v] = len(members[ell])
        members[ell].append(v)
    edges = [[] for _ in range(count)]
    for e, v in enumerate(flat.edge_var.tolist()):
        edges[layer[v]].append(e)
    touching = [[] for _ in range(count)]  # per layer: (group, factor ids, edge positions, their layer slots)
    for gi, scopes in enumerate(scopes_by_group):
        k = len(scopes[0]) if scopes else 0
        fids = [[] for _ in range(count)]
        where = [[] for _ in range(count)]
        targets = [[] for _ in range(count)]
        for f, scope in enumerate(scopes):
            seen = set()
            for j, u in enumerate(scope):
                ell = layer[u]
                if ell not in seen:
                    seen.add(ell)
                    fids[ell].append(f)
                where[ell].append((len(fids[ell]) - 1) * k + j)
                targets[ell].append(slot[u])
        for ell in range(count):
            if fids[ell]:
                touching[ell].append((gi, *(torch.tensor(t, dtype=torch.long, device=dev)
                                            for t in (fids[ell], where[ell], targets[ell]))))
    return [_Layer(torch.tensor(members[ell], dtype=torch.long, device=dev),
                   torch.tensor(edges[ell], dtype=torch.long, device=dev), touching[ell]) for ell in range(count)]


def decode_in_layers(fg: FactorGraph, msgs: torch.Tensor) -> torch.Tensor:
    """A ``[B, V]`` assignment decoded from max-product factor-to-variable log messages ``msgs [B, E, C]`` (in
    :class:`~hybridpgm.infer.bp_engine.FlatGraph`'s edge order), a layer at a time as the module docstring
    says; exact on a tree where the messages have converged."""
    flat = FlatGraph(fg)
    theta = fg.masked_unary()
    B, V, C = theta.shape
    incoming = flat.incoming(flat.beliefs(theta, msgs), msgs)
    x = torch.zeros(B, V, dtype=torch.long, device=theta.device)
    states = torch.arange(C, device=theta.device)
    with torch.no_grad():
        for step in _plan(fg, flat):
            score = theta[:, step.variables]
            for gi, fids, where, targets in step.groups:
                g = fg.groups[gi]
                start, _, _, k = flat.spans[gi]
                edge_ids = (start + fids[:, None] * k + torch.arange(k, device=fids.device)).reshape(-1)
                n = incoming[:, edge_ids].view(B, -1, k, C)
                table = g.log_potentials.index_select(1, fids)
                out = (_pairwise if k == 2 else _kary)(table, n, True).reshape(B, -1, C)
                score = score.index_add(1, targets, out[:, where])
            chosen = score.argmax(-1)
            x[:, step.variables] = chosen
            held = x[:, flat.edge_var[step.edges]]
            incoming[:, step.edges] = torch.where(held[..., None] == states, 0.0, float("-inf")).to(incoming.dtype)
    return x
