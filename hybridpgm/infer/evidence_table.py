r"""Every posterior marginal of a Bayesian network under any hard evidence on a fixed set of nodes, precomputed.

When the observable nodes :math:`E = (e_1, \dots, e_k)` of a network are fixed (sensors, symptoms, survey answers) and
each case observes some of them, the answers to every possible case fit in one table.  With :math:`V` the other
discrete nodes,

.. math::

    T[e, v, x] = p(x_v = x,\ E = e), \qquad T[e, \varnothing] = p(E = e),

for each of the :math:`\prod_i c_i` joint configurations :math:`e` (the joint of the evidence nodes, then one batched
:func:`~hybridpgm.infer.exact.posterior` over the configurations of positive probability).  Giving each evidence dim
one extra index :math:`c_i` that holds the sum over that dim (a zeta transform over the lattice of observed subsets
[1]) turns it into

.. math::

    \bar T[\bar e, v, x] = p(x_v = x,\ E_S = e_S), \qquad
    S = \{ i : \bar e_i < c_i \},

for every subset :math:`S` observed at once, :math:`\prod_i (c_i + 1)` entries per :math:`(v, x)`.  A case is then one
gather, whatever it observes: :math:`p(x_v \mid e_S) = \bar T[\bar e, v, x] / \bar T[\bar e, \varnothing]`, and an
evidence node the case does not observe reads :math:`p(e_i = s \mid e_S) \propto \bar T[\bar e_{i \to s},
\varnothing]`. This is query-based compilation in the sense of Darwiche's arithmetic circuits [2], specialised to a
small evidence set; it pays when many cases are answered against unchanged CPDs.

**Compact layout.**  The sums cost a factor :math:`\prod_i (1 + 1/c_i)` in size (:math:`2^k` for binary nodes).  The
compact layout stores the sum over dim :math:`i` *in place of* one state :math:`d_i` (the least probable one), so the
table keeps :math:`\prod_i c_i` entries, and a case observing :math:`e_i = d_i` reads it back by inclusion–exclusion,

.. math::

    p(\cdot,\ e_i = d_i) = p(\cdot) - \sum_{s \ne d_i} p(\cdot,\ e_i = s),

a signed sum of :math:`\prod_{i:\, e_i = d_i} c_i` entries (node after node). Subtraction loses the digits that
cancel: a case whose terms add up to more than :data:`CANCELLATION` times its :math:`p(e_S)` (an observed dropped
state that is improbable in context), or whose :math:`p(e_S)` comes out not positive, is answered by the contraction
instead, so every answer keeps the subsets layout's accuracy up to that factor.  ``layout="auto"`` builds the subsets
layout when it fits in ``max_bytes`` and the compact one otherwise.  In either layout, when some configuration's
:math:`p(e)` is positive but under float64's smallest normal number (:data:`TINY`; entries of ``1e-310``), the rows
of :math:`p(e_S)` under it, held as subnormals or 0, are answered by the contraction in log space
(:mod:`hybridpgm.infer.evidence_table_rows`).

The table is a snapshot of the CPDs when it is built: it is not differentiable and raises
:class:`~hybridpgm.errors.ConfigError` once a parameter of the network has changed through its version counter, its
storage or a new CPD (training, an in-place edit, ``load_state_dict``, ``.to()``, a new node), once a network with
a CPD other than a table was switched between training and eval mode (``bn.eval()``, ``bn.train()``: a dropout or
batch-norm layer answers otherwise), or ``bn.plan_cache.clear()`` was called (build it again).  An edit through
``tensor.data`` moves no version counter and is not seen, as by the network's own queries: call
``bn.plan_cache.clear()`` after one, which retires the tables built before it too.  Build it with
:meth:`hybridpgm.graphs.BayesNet.compile_evidence`.

**References**

[1] G.-C. Rota, *On the foundations of combinatorial theory I: theory of Möbius functions*, 1964.

[2] A. Darwiche, *A Differential Approach to Inference in Bayesian Networks*, 2003.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from hybridpgm.checks import close_match, shown_items
from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.export_refusal import export_refused
from hybridpgm.infer.bn_contract import check_possible
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.evidence_snapshot import _same, _snapshot, kept, mode_changed, module_changes
from hybridpgm.infer.evidence_table_rows import exact_rows

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["BUILD_CHUNK_BYTES", "CANCELLATION", "DEFAULT_MAX_BYTES", "EvidenceTable", "LAYOUTS", "TINY"]

#: the largest table :meth:`~hybridpgm.graphs.BayesNet.compile_evidence` builds unless told otherwise
DEFAULT_MAX_BYTES = 256 * 2**20

#: the most output one batched query of the build holds at once (the build needs the table plus about this)
BUILD_CHUNK_BYTES = 64 * 2**20

#: the layouts of :class:`EvidenceTable`
LAYOUTS = ("auto", "subsets", "compact")

#: the largest ratio :math:`\sum |\text{terms}| / p(e_S)` a compact row may cancel, per network dtype:
#: its answers then lose at most about that factor times the dtype's resolution (``1e-12`` in float64, ten
#: float32 steps); a row over it is computed by the contraction
CANCELLATION = {torch.float64: 1e4, torch.float32: 10.0, torch.float16: 1.0, torch.bfloat16: 1.0}

#: float64's smallest normal number: a table entry under it has lost digits (a subnormal) or underflowed to 0
TINY = torch.finfo(torch.float64).tiny


class EvidenceTable:
    """The answers to every hard-evidence query over ``nodes`` (see the module docstring).

    :param bn: a checked network of discrete nodes without context inputs.
    :param nodes: the evidence nodes (each case observes any subset of them).
    :param int max_bytes: refuse a table larger than this (default :data:`DEFAULT_MAX_BYTES`); the build
        holds the table, one chunk of configurations' answers at a time (:data:`BUILD_CHUNK_BYTES`) and,
        for the subsets layout, a second copy while it adds the sums.
    :param str layout: ``"subsets"`` (:math:`\\prod_i (c_i + 1)` entries per column, one gather per case),
        ``"compact"`` (:math:`\\prod_i c_i`, signed sums for the cases that observe a dropped state), or
        ``"auto"`` (default): ``"subsets"`` when it fits in ``max_bytes``, else ``"compact"``.
    :ivar list nodes: the evidence nodes; ``others``: the other discrete nodes, in network order.
    :ivar int configurations: :math:`\\prod_i c_i`, the rows of the query that builds the table.
    :ivar str layout: the layout built; ``dropped``: per evidence node, the state the compact layout
        does not store (its least probable one), ``None`` for ``"subsets"``.
    :raises ConfigError: for a network with continuous nodes or inputs, an unknown layout, or a table over
        ``max_bytes``.
    :raises ModelSpecError: before the table is allocated, when an exact query of the build (the joint of
        ``nodes``, the posterior of the other nodes given them) needs more than
        :data:`hybridpgm.infer.bn_contract.EXACT_MAX_BYTES` per evidence row (the network's treewidth is too
        large, or the joint of ``nodes`` is), as those queries raise it.
    :raises EvidenceError: for an unknown or repeated node.
    """

    #: whether a configuration of positive probability has p(e) under :data:`TINY` (default: tables pickled
    #: before it was kept)
    _underflow = False

    def __init__(self, bn: "BayesNet", nodes: Sequence[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 layout: str = "auto"):
        from hybridpgm.infer.exact import log_evidence, posterior

        facts = network_facts(bn)
        built_from = _snapshot(bn, values=True)  # before the CPDs are read: a write meanwhile is seen later
        nodes = [nodes] if isinstance(nodes, str) else list(nodes)
        if not nodes:
            raise EvidenceError("an evidence table needs at least one evidence node")
        for v in nodes:
            if v not in facts.cards:
                raise EvidenceError(f"evidence table names unknown variable {v!r}{close_match(v, facts.nodes)} "
                                    f"(nodes: {shown_items(facts.nodes)})")
        if len(set(nodes)) != len(nodes):
            raise EvidenceError(f"evidence table nodes repeat: [{shown_items(nodes)}]")
        continuous = [v for v in facts.nodes if facts.cards[v] is None]
        if continuous or facts.inputs:
            raise ConfigError(f"an evidence table needs a network of discrete nodes without inputs; this one has "
                              f"continuous nodes {continuous} and inputs {sorted(facts.inputs)}")
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown evidence table layout {layout!r}; expected one of {LAYOUTS}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Real) or max_bytes != max_bytes:
            raise ConfigError(f"evidence table max_bytes must be a number of bytes (an int), got "
                              f"{type(max_bytes).__name__} {max_bytes!r:.40}")
        self.bn, self.nodes = bn, nodes
        self.others = [v for v in facts.nodes if v not in nodes]
        self.cards = [facts.cards[v] for v in nodes]
        self.configurations = math.prod(self.cards)
        widths = [facts.cards[v] for v in self.others]
        self._offsets = dict(zip(self.others, [sum(widths[:i]) for i in range(len(widths))]))
        self._width = sum(widths)  # columns of the other nodes; the last column holds p(e_S)
        entry = (self._width + 1) * torch.finfo(torch.float64).bits // 8
        sizes = {"subsets": math.prod(c + 1 for c in self.cards) * entry, "compact": self.configurations * entry}
        if layout == "auto":
            layout = "subsets" if sizes["subsets"] <= max_bytes else "compact"
        self.layout, self.nbytes = layout, sizes[layout]
        if self.nbytes > max_bytes:
            also = "" if layout == "compact" else f" ({sizes['compact'] / 2**20:.1f} MiB compact)"
            raise ConfigError(f"the evidence table over {nodes} (cardinalities {self.cards}) would take "
                              f"{self.nbytes / 2**20:.1f} MiB in the {layout} layout{also}, over "
                              f"max_bytes={max_bytes / 2**20:.1f} MiB; pass fewer nodes or a larger max_bytes")
        device = bn.device
        # the exact queries of the build run before the table is allocated: a network whose contraction the
        # exact guard refuses (hybridpgm.infer.bn_contract.EXACT_MAX_BYTES) raises its ModelSpecError up front
        with torch.no_grad():
            # p(E = e) for every configuration: one contraction with the evidence nodes as output dims
            z = (posterior(bn, nodes, None, joint=True) if len(nodes) > 1 else posterior(bn, nodes[0]))
            z = z.double().reshape(-1)
            grid = torch.cartesian_prod(*[torch.arange(c, device=device) for c in self.cards]).reshape(-1, len(nodes))
            evidence = {v: grid[:, i] for i, v in enumerate(nodes)}
            rows = max(1, BUILD_CHUNK_BYTES // entry)  # the configurations of one batched query
            # p(e) under the dtype's smallest normal number (a float32 network: 1e-38) lost digits or underflowed
            # to 0 in the joint; those configurations are scored again by log_evidence (log space where
            # probabilities underflow) and exponentiated in float64; one still under float64's (a float64 network
            # with entries of 1e-310) marks the table: its rows under that are answered by the contraction
            for chunk in (z < torch.finfo(bn.dtype).tiny).nonzero().flatten().split(rows):
                log_z = log_evidence(bn, {v: t[chunk] for v, t in evidence.items()}).double()
                z[chunk] = log_z.exp()
                self._underflow |= bool(((log_z > -math.inf) & (z[chunk] < TINY)).any())
            chunks = (z > 0).nonzero().flatten().split(rows) if self.others else ()
            post = posterior(bn, self.others, {v: t[chunks[0]] for v, t in evidence.items()}) if chunks else None
            table = torch.zeros(self.configurations, self._width + 1, dtype=torch.float64, device=device)
            for i, chunk in enumerate(chunks):
                if i:
                    post = posterior(bn, self.others, {v: t[chunk] for v, t in evidence.items()})
                table[chunk, :-1] = torch.cat([post[v].double() for v in self.others], dim=1) * z[chunk, None]
            table[:, -1] = z
        table = table.reshape(*self.cards, self._width + 1)
        if layout == "subsets":
            self.dropped = None
            for i in range(len(nodes)):  # index c_i of dim i: the sum over it (node i not observed)
                table = torch.cat([table, table.sum(i, keepdim=True)], dim=i)
            self._all = torch.tensor(self.cards, device=device)
            spans = [c + 1 for c in self.cards]
        else:
            marginals = [z.reshape(self.cards).sum([j for j in range(len(nodes)) if j != i]) for i in range(len(nodes))]
            self.dropped = [int(m.argmin()) for m in marginals]
            for i, d in enumerate(self.dropped):  # index d_i of dim i: the sum over it, in place of state d_i
                table.select(i, d).copy_(table.sum(i))
            self._all = torch.tensor(self.dropped, device=device)
            spans = list(self.cards)
        self._table = table.reshape(-1, self._width + 1)
        strides = [math.prod(spans[i + 1:]) for i in range(len(nodes))]
        self._strides = torch.tensor(strides, device=device)
        # per evidence node: the states stored (all but the dropped one in the compact layout), and the index
        # moves from its sum index to each of them
        self._stored = [torch.tensor([s for s in range(c) if self.dropped is None or s != self.dropped[i]],
                                     dtype=torch.long, device=device)  # a one-state node stores none: still long
                        for i, c in enumerate(self.cards)]
        self._shifts = [(st - int(a)) * t for st, a, t in zip(self._stored, self._all, strides)]
        self._dtype = bn.dtype
        self._built_from = built_from

    def __getstate__(self) -> dict:
        """The table's state, with its snapshot's value copies if it still matched its network, else ``None`` (a
        snapshot holds storage addresses, which a copy does not keep)."""
        state = dict(self.__dict__)
        fresh = _same(_snapshot(self.bn), self._built_from)
        state["_built_from"] = [copy for _, _, copy in self._built_from[1]] if fresh else None
        return state

    def __setstate__(self, state: dict) -> None:
        """A pickled or deep-copied table answers for the copy of its network that travelled with it (its
        snapshot is taken again, with the value copies it was built with), unless the network had already
        changed when it was copied."""
        copies = state.pop("_built_from")
        self.__dict__.update(state)
        if copies is None or copies is False:  # False: a table pickled by an older version, stale then
            self._built_from = (None, [], None)
        else:
            now = _snapshot(self.bn, values=copies is True)  # True: an older version's fresh table
            self._built_from = now if copies is True else kept(now, copies)

    def __repr__(self) -> str:
        return (f"EvidenceTable(nodes={self.nodes}, configurations={self.configurations}, layout={self.layout!r}, "
                f"{self.nbytes / 2**20:.2f} MiB)")

    def _check_fresh(self) -> None:
        now = _snapshot(self.bn)
        if not _same(now, self._built_from):
            if mode_changed(now, self._built_from):
                raise ConfigError(f"the network was switched between training and eval mode (bn.train()/bn.eval()) "
                                  f"after its evidence table over {self.nodes} was built, and a neural CPD may answer "
                                  f"otherwise in the other mode (dropout, batch norm); build it again with "
                                  f"bn.compile_evidence in the mode it is to answer in")
            what = module_changes(now, self._built_from) or ("a CPD was updated, added or moved, or "
                                                             "bn.plan_cache.clear() was called")
            raise ConfigError(f"the network changed after its evidence table over {self.nodes} was built "
                              f"({what}); build it again with bn.compile_evidence")

    def _values(self, evidence: Mapping | None):
        """``(ev, values [N, k] long)``: the parsed evidence and each row's observed state of each table
        node, ``-1`` where the row does not observe it."""
        self._check_fresh()
        ev = parse_evidence(self.bn, evidence)
        outside = [v for v in (*ev.observed, *ev.partial) if v not in self.nodes]
        if outside or ev.values:
            raise EvidenceError(f"evidence on {outside or sorted(ev.values)}, outside the table's nodes "
                                f"{self.nodes}; use bn.posterior for it")
        if ev.soft:
            raise EvidenceError(f"soft evidence on {sorted(ev.soft)}: the table holds hard evidence only; "
                                f"use bn.posterior for it")
        values = torch.full((ev.n, len(self.nodes)), -1, dtype=torch.long, device=self._table.device)
        for i, v in enumerate(self.nodes):
            if v in ev.observed:
                values[:, i] = ev.observed[v]
            elif v in ev.partial:  # observed in some rows: its log-indicator has -inf there
                lik = ev.partial[v]
                values[:, i] = torch.where(torch.isinf(lik).any(-1), lik.argmax(-1), -1)
        return ev, values

    def _terms(self, values: torch.Tensor):
        """The signed entries whose sum is each row's :math:`p(\\cdot, e_S)`: ``(row [M], entry [M], sign [M]
        or None)``.  An observed state is its own index, a node not observed its sum index; in the compact
        layout a row observing the dropped state :math:`d_i` reads the sum index minus the other states,
        :math:`p(e_i = d_i, \\cdot) = p(\\cdot) - \\sum_{s \\ne d_i} p(e_i = s, \\cdot)`, node after node."""
        entry = (torch.where(values >= 0, values, self._all) * self._strides).sum(1)
        row, sign = torch.arange(values.shape[0], device=values.device), None
        if self.dropped is None:
            return row, entry, sign
        hits = values == self._all  # observed the dropped state (never true where not observed: -1)
        for i in hits.any(0).nonzero().flatten().tolist():
            if sign is None:
                sign = torch.ones(row.shape[0], dtype=torch.float64, device=values.device)
            hit, shifts = hits[row, i], self._shifts[i]
            row = torch.cat([row, row[hit].repeat_interleave(shifts.numel())])
            entry = torch.cat([entry, (entry[hit, None] + shifts).reshape(-1)])
            sign = torch.cat([sign, (-sign[hit]).repeat_interleave(shifts.numel())])
        return row, entry, sign

    def _answer(self, values: torch.Tensor, columns: bool, asked: Sequence[int] = ()):
        """``(joint, states, shift)`` for the rows ``values``: ``joint`` ``[N, W + 1]`` holds :math:`p(x_v = x,
        e_S)` for every other node's states, then :math:`p(e_S)` (only that column without ``columns``);
        ``states[i]`` ``[N, c_i]`` holds :math:`p(e_i = s, e_S)` for the evidence nodes ``asked`` (by
        position), read with node ``i`` moved from its sum index to each state (meaningful in the rows that
        do not observe it; the compact layout's dropped state is :math:`p(e_S)` minus the others), each row
        divided by :math:`\\exp(\\text{shift})` (``[N]``, 0 for rows read from the table; ``None``: all 0).
        A compact row whose signed sum cancels more than :data:`CANCELLATION` allows, or whose :math:`p(e_S)` is
        not positive, and a row of :math:`p(e_S)` under :data:`TINY` in a table holding such probabilities
        (digits lost) are computed by the contraction instead (:meth:`_exact`)."""
        row, entry, sign = self._terms(values)
        n, device = values.shape[0], values.device
        terms = self._table[entry] if columns else self._table[entry, -1:]
        joint = terms if sign is None else torch.zeros(n, terms.shape[1], dtype=torch.float64, device=device) \
            .index_add_(0, row, terms * sign[:, None])
        states = {}
        if asked:  # one gather for every (node, stored state): the terms moved from the node's sum index
            node = torch.cat([torch.full_like(self._shifts[i], i) for i in asked])
            moves = torch.cat([self._shifts[i] for i in asked])
            free = (values[row][:, node] < 0).T.long()  # [S, M]: where a term's row leaves the node unobserved
            read = self._table[entry + moves[:, None] * free, -1]
            if sign is not None:
                read = torch.zeros(read.shape[0], n, dtype=torch.float64, device=device).index_add_(1, row, read * sign)
            for i, part in zip(asked, read.split([self._shifts[i].numel() for i in asked])):
                p = torch.zeros(n, self.cards[i], dtype=torch.float64, device=device)
                p[:, self._stored[i]] = part.T
                if part.shape[0] < self.cards[i]:
                    p[:, self.dropped[i]] = (joint[:, -1] - p.sum(1)).clamp_min_(0.0)
                states[i] = p
        z, shift = joint[:, -1], None
        bad = (z < TINY) if self._underflow else None
        if sign is not None:
            scale = torch.zeros(n, dtype=torch.float64, device=device).index_add_(0, row, self._table[entry, -1])
            bad = (scale > CANCELLATION[self._dtype] * z) | (z <= 0) | (False if bad is None else bad)
        if bad is not None and bool(bad.any()):
            shift = torch.zeros(n, dtype=torch.float64, device=device)
            exact_joint, exact_states, shift[bad] = self._exact(values[bad], columns, asked)
            joint[bad] = exact_joint
            for i in asked:
                states[i][bad] = exact_states[i]
        if sign is not None:
            joint.clamp_min_(0.0)
        return joint, states, shift

    def _exact(self, values: torch.Tensor, columns: bool, asked: Sequence[int]):
        """:meth:`_answer` for a few rows by the contraction
        (:func:`~hybridpgm.infer.evidence_table_rows.exact_rows`)."""
        return exact_rows(self, values, columns, asked)

    @export_refused("EvidenceTable.log_evidence")
    def log_evidence(self, evidence: Mapping | None = None) -> torch.Tensor:
        """:math:`\\log p(e_S)` per row, as :meth:`hybridpgm.graphs.BayesNet.log_evidence` (``[N]``, or a scalar).

        :param evidence: hard evidence on the table's nodes, as for :meth:`posterior` (``None``: none)."""
        ev, values = self._values(evidence)
        joint, _, shift = self._answer(values, columns=False)
        out = joint[:, 0].log() if shift is None else joint[:, 0].log() + shift
        out = out.to(self._dtype)
        return out if ev.batched else out[0]

    @export_refused("EvidenceTable.posterior")
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

        ev, values = self._values(evidence)
        facts = network_facts(self.bn)
        names = posterior_names(facts, query, ev.observed)
        asked = [self.nodes.index(q) for q in names if q not in self._offsets]
        joint, states, _ = self._answer(values, columns=len(asked) < len(names), asked=asked)  # ratios: no shift
        z = joint[:, -1:]
        check_possible(z.log(), "the posterior")
        out = {}
        for q in names:
            c = facts.cards[q]
            if q in self._offsets:
                p = joint[:, self._offsets[q]:self._offsets[q] + c] / z
            else:  # an evidence node: one-hot where the row observes it, else p(e_q = s, e_S) / p(e_S)
                i = self.nodes.index(q)
                value = values[:, i]
                hot = (torch.arange(c, device=values.device) == value[:, None]).double()
                p = torch.where((value >= 0)[:, None], hot, states[i] / z)
            p = p.to(self._dtype)
            out[q] = p if ev.batched else p[0]
        return out[query] if isinstance(query, str) else out
