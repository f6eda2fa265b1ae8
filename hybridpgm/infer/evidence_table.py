r"""Every posterior marginal of a Bayesian network under any hard evidence on a fixed set of nodes, precomputed.

When the observable nodes :math:`E = (e_1, \dots, e_k)` of a network are fixed
(sensors, symptoms, survey answers) and each case observes some of them, the
answers to every possible case fit in one table.  With :math:`V` the other
discrete nodes,

.. math::

    T[e, v, x] = p(x_v = x,\ E = e), \qquad T[e, \varnothing] = p(E = e),

for each of the :math:`\prod_i c_i` joint configurations :math:`e` (the joint
of the evidence nodes, then one batched :func:`~hybridpgm.infer.exact.posterior`
over the configurations of positive probability).  Giving each evidence dim one
extra index :math:`c_i` that holds the sum over that dim (a zeta transform
over the lattice of observed subsets [1]) turns it into

.. math::

    \bar T[\bar e, v, x] = p(x_v = x,\ E_S = e_S), \qquad
    S = \{ i : \bar e_i < c_i \},

for every subset :math:`S` observed at once, :math:`\prod_i (c_i + 1)` entries
per :math:`(v, x)`.  A case is then one gather, whatever it observes:
:math:`p(x_v \mid e_S) = \bar T[\bar e, v, x] / \bar T[\bar e, \varnothing]`,
and an evidence node the case does not observe reads
:math:`p(e_i = s \mid e_S) \propto \bar T[\bar e_{i \to s}, \varnothing]`.
This is query-based compilation in the sense of Darwiche's arithmetic
circuits [2], specialised to a small evidence set; it pays when many cases are
answered against unchanged CPDs.

The table is a snapshot of the CPDs when it is built: it is not differentiable
and raises :class:`~hybridpgm.errors.ConfigError` once a parameter of the
network has changed (build it again).  Build it with
:meth:`hybridpgm.graphs.BayesNet.compile_evidence`.

**References**

[1] G.-C. Rota, *On the foundations of combinatorial theory I: theory of Möbius functions*, 1964.

[2] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.infer.bn_contract import check_possible
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["DEFAULT_MAX_BYTES", "EvidenceTable"]

#: the largest table :meth:`~hybridpgm.graphs.BayesNet.compile_evidence` builds unless told otherwise
DEFAULT_MAX_BYTES = 256 * 2**20


def _snapshot(bn: "BayesNet") -> tuple:
    """The node names, and every tensor of the network (held, so that no new tensor can take a freed
    one's identity) with its in-place version and its storage (``.to()`` and ``.double()`` swap a
    parameter's data without a new version)."""
    facts = network_facts(bn)
    if facts.tables_only:  # a table CPD holds its tensors itself: no walk over the module tree
        tensors = [t for c in facts.cpds.values() for t in (*c._parameters.values(), *c._buffers.values())
                   if t is not None]
    else:
        tensors = list(bn._tensors())
    return tuple(facts.nodes), [(t, (t._version, t.data_ptr(), t.dtype)) for t in tensors]


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(
        s is t and u == v for (s, u), (t, v) in zip(a[1], b[1]))


class EvidenceTable:
    """The answers to every hard-evidence query over ``nodes`` (see the module docstring).

    :param bn: a checked network of discrete nodes without context inputs.
    :param nodes: the evidence nodes (each case observes any subset of them).
    :param int max_bytes: refuse a table larger than this (default :data:`DEFAULT_MAX_BYTES`); building it
        holds up to about twice that.
    :ivar list nodes: the evidence nodes; ``others``: the other discrete nodes, in network order.
    :ivar int configurations: :math:`\\prod_i c_i`, the rows of the query that builds the table.
    :raises ConfigError: for a network with continuous nodes or inputs, or a table over ``max_bytes``.
    :raises EvidenceError: for an unknown or repeated node.
    """

    def __init__(self, bn: "BayesNet", nodes: Sequence[str], *, max_bytes: int = DEFAULT_MAX_BYTES):
        from hybridpgm.infer.exact import posterior

        facts = network_facts(bn)
        nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        if not nodes:
            raise EvidenceError("an evidence table needs at least one evidence node")
        for v in nodes:
            if v not in facts.cards:
                raise EvidenceError(f"evidence table names unknown variable '{v}' (nodes: {facts.nodes})")
        if len(set(nodes)) != len(nodes):
            raise EvidenceError(f"evidence table nodes repeat: {nodes}")
        continuous = [v for v in facts.nodes if facts.cards[v] is None]
        if continuous or facts.inputs:
            raise ConfigError(f"an evidence table needs a network of discrete nodes without inputs; this one has "
                              f"continuous nodes {continuous} and inputs {sorted(facts.inputs)}")
        self.bn, self.nodes = bn, nodes
        self.others = [v for v in facts.nodes if v not in nodes]
        self.cards = [facts.cards[v] for v in nodes]
        self.configurations = math.prod(self.cards)
        widths = [facts.cards[v] for v in self.others]
        self._offsets = dict(zip(self.others, [sum(widths[:i]) for i in range(len(widths))]))
        self._width = sum(widths)  # columns of the other nodes; the last column holds p(e_S)
        entries = math.prod(c + 1 for c in self.cards) * (self._width + 1)
        self.nbytes = entries * torch.finfo(torch.float64).bits // 8
        if self.nbytes > max_bytes:
            raise ConfigError(f"the evidence table over {nodes} (cardinalities {self.cards}) would take "
                              f"{self.nbytes / 2**20:.1f} MiB, over max_bytes={max_bytes / 2**20:.1f} MiB; "
                              f"pass fewer nodes or a larger max_bytes")
        device = bn.device
        grid = torch.cartesian_prod(*[torch.arange(c, device=device) for c in self.cards]).reshape(-1, len(nodes))
        evidence = {v: grid[:, i] for i, v in enumerate(nodes)}
        table = torch.zeros(self.configurations, self._width + 1, dtype=torch.float64, device=device)
        with torch.no_grad():
            # p(E = e) for every configuration: one contraction with the evidence nodes as output dims
            z = (posterior(bn, nodes, None, joint=True) if len(nodes) > 1 else posterior(bn, nodes[0]))
            z = z.double().reshape(-1)
            possible = z > 0
            if self.others and bool(possible.any()):
                post = posterior(bn, self.others, {v: t[possible] for v, t in evidence.items()})
                joint = torch.cat([post[v].double() for v in self.others], dim=1) * z[possible, None]
                table[possible, :-1] = joint
            table[:, -1] = z
        table = table.reshape(*self.cards, self._width + 1)
        for i in range(len(nodes)):  # index c_i of dim i: the sum over it (node i not observed)
            table = torch.cat([table, table.sum(i, keepdim=True)], dim=i)
        self._table = table.reshape(-1, self._width + 1)
        strides = [math.prod(c + 1 for c in self.cards[i + 1:]) for i in range(len(nodes))]
        self._stride = dict(zip(nodes, strides))
        self._dtype = bn.dtype
        self._built_from = _snapshot(bn)

    def __repr__(self) -> str:
        return (f"EvidenceTable(nodes={self.nodes}, configurations={self.configurations}, "
                f"{self.nbytes / 2**20:.2f} MiB)")

    def _check_fresh(self) -> None:
        if not _same(_snapshot(self.bn), self._built_from):
            raise ConfigError(f"the network changed after its evidence table over {self.nodes} was built "
                              f"(a CPD was updated, added or moved); build it again with bn.compile_evidence")

    def _indices(self, evidence: Mapping | None):
        """``(ev, flat [N] long)``: the parsed evidence and each row's entry of the table."""
        self._check_fresh()
        ev = parse_evidence(self.bn, evidence)
        outside = [v for v in (*ev.observed, *ev.partial) if v not in self._stride]
        if outside or ev.values:
            raise EvidenceError(f"evidence on {outside or sorted(ev.values)}, outside the table's nodes "
                                f"{self.nodes}; use bn.posterior for it")
        if ev.soft:
            raise EvidenceError(f"soft evidence on {sorted(ev.soft)}: the table holds hard evidence only; "
                                f"use bn.posterior for it")
        index = torch.zeros(ev.n, dtype=torch.long, device=self._table.device)
        for v, c in zip(self.nodes, self.cards):
            if v in ev.observed:
                value = ev.observed[v]
            elif v in ev.partial:  # observed in some rows: its log-indicator has -inf there; c elsewhere
                lik = ev.partial[v]
                value = torch.where(torch.isinf(lik).any(-1), lik.argmax(-1), c)
            else:  # observed in no row
                value = c
            index += value * self._stride[v]
        return ev, index

    def log_evidence(self, evidence: Mapping | None = None) -> torch.Tensor:
        """:math:`\\log p(e_S)` per row, as :meth:`hybridpgm.graphs.BayesNet.log_evidence` (``[N]``, or a scalar)."""
        ev, index = self._indices(evidence)
        out = self._table[index, -1].log().to(self._dtype)
        return out if ev.batched else out[0]

    def posterior(self, query: str | Sequence[str] | None = None, evidence: Mapping | None = None):
        """Posterior marginals, as :meth:`hybridpgm.graphs.BayesNet.posterior` returns them (not differentiable).

        :param query: a node name, a list of names, or ``None`` for every node not observed in every row.
        :param evidence: hard evidence on the table's nodes, in any format
            :func:`~hybridpgm.infer.bn_evidence.parse_evidence` takes (``-1`` or ``NaN``: not observed in a row).
        :returns: ``[N, card]`` for one name, else a dict name -> ``[N, card]`` (without ``N`` when no
            evidence value has a row dim).
        :raises EvidenceError: for evidence outside the table's nodes, soft evidence, a query observed in
            every row, or evidence of probability zero (naming the rows).
        :raises ConfigError: when the network changed after the table was built.
        """
        from hybridpgm.infer.exact import posterior_names

        ev, index = self._indices(evidence)
        facts = network_facts(self.bn)
        names = posterior_names(facts, query, ev.observed)
        rows = self._table[index]
        z = rows[:, -1:]
        check_possible(z.log(), "the posterior")
        marginals = (rows[:, :-1] / z).to(self._dtype)  # every other node's marginal, side by side
        out = {}
        for q in names:
            c = facts.cards[q]
            if q in self._offsets:
                p = marginals[:, self._offsets[q]:self._offsets[q] + c]
            else:  # an evidence node: one-hot where the row observes it, else the entries with it set to each state
                stride = self._stride[q]
                value = (index // stride) % (c + 1)  # c: not observed in this row
                states = torch.arange(c, device=index.device)
                p = self._table[(index - value * stride)[:, None] + states * stride, -1] / z
                p = torch.where((value < c)[:, None], (states == value[:, None]).double(), p).to(self._dtype)
            out[q] = p if ev.batched else p[0]
        return out[query] if isinstance(query, str) else out
