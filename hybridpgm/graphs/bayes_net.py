"""Bayesian networks over named variables, with table, neural and linear-Gaussian CPDs.

A :class:`BayesNet` factorises a joint distribution along a DAG,

.. math:: p(x) = \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)}),

where each factor is a :mod:`~hybridpgm.graphs.cpd` module.  The network is a
Pyro program (:meth:`BayesNet.model`) over a data plate, in which every missing
discrete entry is a latent site enumerated in parallel, so
:class:`pyro.infer.TraceEnum_ELBO` with the empty :meth:`BayesNet.guide` is the
exact negative log-likelihood of the observed entries and gradient steps on it
learn the CPDs from incomplete data (the same fixed points as EM [2]).  Exact
queries (:meth:`posterior`, :meth:`log_evidence`, :meth:`map`) are batched tensor
contractions (:mod:`hybridpgm.infer.exact`).  How data is read (columns, missing
entries, context inputs) is the mixin :class:`~hybridpgm.graphs.bn_data.BayesNetData`, the Pyro model and
guide the mixin :class:`~hybridpgm.graphs.bn_model.BayesNetModel`, the exact queries and their caches the mixin
:class:`~hybridpgm.graphs.bn_queries.BayesNetQueries`.

>>> import torch
>>> from hybridpgm.graphs import BayesNet, cpd
>>> bn = BayesNet()
>>> bn.add("rain", cpd.Table([0.8, 0.2]))                                # doctest: +ELLIPSIS
BayesNet(...)
>>> bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"]))  # doctest: +ELLIPSIS
BayesNet(...)
>>> bn.posterior("rain", {"wet": 1})
tensor([0.3333, 0.6667], grad_fn=<SelectBackward0>)

**References**

[1] J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988.

[2] A. P. Dempster, N. M. Laird, D. B. Rubin, *Maximum Likelihood from
Incomplete Data via the EM Algorithm*, 1977.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from pyro.nn import PyroModule
from torch import nn

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.checks import close_match, module_name, shown_items
from hybridpgm.graphs.bayes_net_repr import bayes_net_text
from hybridpgm.graphs.bn_cpds import CPDDict, assign_all, check_node_name, checked_state_names, link, put
from hybridpgm.graphs.bn_data import BayesNetData
from hybridpgm.graphs.bn_graph import DagIndex, topological_order
from hybridpgm.graphs.bn_model import BayesNetModel
from hybridpgm.graphs.bn_queries import BayesNetQueries
from hybridpgm.graphs.contraction import PlanCache
from hybridpgm.graphs.cpd_base import CPD
from hybridpgm.module_registration import frozen_aware_module
from hybridpgm.serialization_structure import record_declared

__all__ = ["BayesNet"]


class BayesNet(BayesNetQueries, BayesNetModel, BayesNetData, PyroModule):
    """A directed graphical model: named nodes, each with a CPD over its parents.

    :param cpds: optional mapping node name -> :class:`~hybridpgm.graphs.cpd_base.CPD`,
        added in order (parents may be declared after their children).
    :param dict state_names: optional node -> list of state names (for string evidence).
    :param str name: the :class:`~pyro.nn.PyroModule` name: under Pyro's global param store (plain
        :class:`pyro.infer.SVI`) the CPDs' parameters are ``"<name>.cpds$$$<node>.<parameter>"`` instead of
        ``"cpds$$$<node>.<parameter>"``, so two networks of the same node names keep their parameters apart in
        one program (with :meth:`model`'s ``prefix`` for the site names; see :doc:`/pyro_native`).  Saved and
        loaded with the network.
    :raises ModelSpecError: ``cpds`` or ``state_names`` is not a mapping, ``name`` is not a string (or holds ``"$$$"``),
        ``state_names`` names a node not in ``cpds``, or any check of :meth:`add`
        and :meth:`check` fails.

    ``cpds`` is a :class:`~torch.nn.ModuleDict` whose edits (``bn.cpds[name] = cpd``, ``del``, ``update``,
    ``pop``, ``clear``, ``bn.cpds = {...}``) are checked as :meth:`add` is and clear every cache of the queries
    (:mod:`~hybridpgm.graphs.bn_cpds`).

    **Networks in training mode** (the mode :func:`~hybridpgm.fit` hands back): the queries (:meth:`posterior`,
    :meth:`log_evidence`, :meth:`map`, :meth:`sample`, :meth:`compile_evidence`) in train mode use batch statistics
    but leave running statistics unchanged (every buffer of a CPD's network is restored); the training losses
    (:meth:`model`, :meth:`log_prob`) update them as any forward pass does.
    """

    cpds = frozen_aware_module("cpds", """The nodes' CPDs, node -> CPD (a :class:`~torch.nn.ModuleDict`); the
        parameters of a CPD's network frozen by ``requires_grad_(False)`` are left out of Pyro's param store without
        a warning (:func:`~hybridpgm.module_registration.frozen_aware_module`).""")

    def __init__(self, cpds: Mapping[str, CPD] | None = None, *, state_names: Mapping | None = None, name: str = ""):
        super().__init__(module_name(name, "BayesNet"))
        self._module_name = name  # the constructor's (a supermodule renames _pyro_name), for serialization
        self.cpds = CPDDict()  # its edits (bn.cpds[name] = cpd, del, update, ...) are checked as add's
        link(self._modules["cpds"], self)
        self.state_names: dict[str, list] = {}
        self.plan_cache = PlanCache()
        self._order: list[str] | None = None
        self._dag = DagIndex()
        record_declared(self)  # what save compares the network with; each add adds its node (serialization_structure)
        for what, arg in (("cpds", cpds), ("state_names", state_names)):
            if arg is not None and not isinstance(arg, Mapping):
                raise ModelSpecError(f"BayesNet {what} must be a mapping node name -> value, got {type(arg).__name__}")
        unknown = sorted(map(str, set(state_names or {}) - set(cpds or {})))
        if unknown:
            raise ModelSpecError(f"BayesNet state_names names node(s) {unknown} that are not in cpds "
                                 f"{list(cpds or {})}")
        for name, c in (cpds or {}).items():
            self.add(name, c, states=(state_names or {}).get(name))
        if cpds:
            self.check()

    # ------------------------------------------------------------------ declaration
    def add(self, name: str, cpd: CPD, *, states: Sequence | None = None) -> "BayesNet":
        """Declare node ``name`` with its CPD; returns ``self`` for chaining.

        :param name: the node's name: a non-empty string without ``.``, not ``"data"``, and not the name of an
            attribute of :class:`torch.nn.ModuleDict`, in which the CPDs are held (its methods and ``training``:
            ``"type"``, ``"train"``, ``"eval"``, ``"float"``, ``"to"``, ``"keys"``, ``"values"``, ``"items"``,
            ``"update"``, ``"parameters"``, ``"children"`` ..., each name ``n`` with ``hasattr(nn.ModuleDict(), n)``).
        :param cpd: its conditional distribution (:class:`~hybridpgm.graphs.cpd.Table`,
            :class:`~hybridpgm.graphs.cpd.Neural`, :class:`~hybridpgm.graphs.cpd.LinearGaussian`), whose
            ``parents`` are the node's parents.
        :param states: optional names of the node's states, one per state, distinct (a list or tuple, not a string).
        :raises ModelSpecError: duplicate name, a cycle, a malformed table (rows not summing to 1, negative
            entries, wrong dims), ``states`` that are not distinct names matching the cardinality (or given for a
            continuous node), a CPD that does not match already-declared parents (shape, cardinality), a node that
            is the last missing parent of an already-declared child whose CPD does not match it, the name
            ``"data"`` (the plate of :meth:`model`), or a name that :class:`torch.nn.ModuleDict` reserves; the
            message names the node.  A refused call changes nothing (no node, state names, or binding of a CPD),
            so the corrected call can follow.
        """
        cpds = self.cpds  # looked up once (PyroModule.__getattr__), not once per parent below
        check_node_name(name, cpds)
        if name in cpds:
            raise ModelSpecError(f"node {name!r} is already declared")
        if not isinstance(cpd, CPD):
            raise ModelSpecError(f"node {name!r}: expected a CPD, got {type(cpd).__name__}")
        cpd.validate(name)  # a malformed table, named now that its node is known
        if name in cpd.parents:
            raise ModelSpecError(f"node {name!r} cannot be its own parent")
        if states is not None:
            states = checked_state_names(name, cpd, states)
        dag = self._dag_index()
        cycle = dag.cycle_through(name, cpd.parents)
        if cycle:
            raise ModelSpecError(f"adding node {name!r} creates the cycle {' -> '.join(cycle)}")
        put(cpds, name, cpd)
        dag.insert(name, cpd.parents)
        # bind the new node, and every child for which it was the last undeclared parent
        ready = [(name, cpd)] + [(v, cpds[v]) for v in dag.declared_children(name)
                                 if all(p in dag.parents for p in dag.parents[v])]
        bound = [(c, c.node, c.parent_cards) for _, c in ready]  # a refused add leaves every CPD as it was
        for v, c in ready:
            if all(p in dag.parents for p in dag.parents[v]):
                try:
                    c.bind(v, {p: cpds[p].cardinality for p in dag.parents[v]})
                except ModelSpecError as e:
                    del cpds._modules[name]
                    dag.remove(name)
                    for c_, node, parent_cards in bound:
                        c_.node, c_.parent_cards = node, parent_cards
                    if v == name:
                        raise
                    raise ModelSpecError(f"adding node {name!r} (cardinality {cpd.cardinality}) conflicts with "
                                         f"its child: {e}") from e
        if states is not None:
            self.state_names[name] = states
        self._order = None
        self.plan_cache.clear()
        record_declared(self, f"cpds.{name}")
        return self

    def __setattr__(self, name: str, value) -> None:
        """``bn.cpds = mapping`` replaces every node, checked as a whole (:func:`~hybridpgm.graphs.bn_cpds.
        assign_all`); any other attribute is set as :class:`~pyro.nn.PyroModule` sets it."""
        if name == "cpds" and "cpds" in self.__dict__.get("_modules", ()):
            assign_all(self._modules["cpds"], value)
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name == "cpds":
            raise ModelSpecError("BayesNet.cpds cannot be deleted; remove nodes with del bn.cpds[name] or "
                                 "bn.cpds.clear()")
        super().__delattr__(name)

    def __setstate__(self, state: dict) -> None:
        """Unpickled or deep-copied: its CPD map notifies this network (a network pickled by a version whose map
        was a plain :class:`torch.nn.ModuleDict` gets a :class:`~hybridpgm.graphs.bn_cpds.CPDDict`)."""
        super().__setstate__(state)
        cpds = self._modules.get("cpds")
        if type(cpds) is nn.ModuleDict:
            cpds.__class__ = CPDDict
        if isinstance(cpds, CPDDict):
            link(cpds, self)

    @property
    def _cpd_map(self) -> CPDDict:
        """:attr:`cpds` for a look-up: the map itself, never registered with Pyro (inside a Pyro method a read of
        :attr:`cpds` registers every CPD parameter, which a look-up per node made quadratic in the nodes)."""
        return self._modules["cpds"]

    def _dag_index(self) -> DagIndex:
        """The parents/children index of the declared nodes (:class:`~hybridpgm.graphs.bn_graph.DagIndex`),
        kept by :meth:`add`; rebuilt from the CPDs when it does not cover them (a network pickled by a version
        without it)."""
        dag = self.__dict__.get("_dag")
        if dag is None or len(dag) != len(self._cpd_map):
            self._dag = dag = DagIndex({v: c.parents for v, c in self._cpd_map.items()})
        return dag

    def check(self) -> "BayesNet":
        """Validate the whole network (unknown parents, CPD shapes) and fix a topological order.

        Called automatically by every query; call it yourself to fail early.

        :raises ModelSpecError: naming the node at fault.
        """
        if self._order is not None:
            return self
        cpds = self._cpd_map
        for v, c in cpds.items():
            if unknown := [p for p in c.parents if p not in cpds]:
                raise ModelSpecError(f"node {v!r} has unknown parent(s) {unknown}")
            c.bind(v, {p: cpds[p].cardinality for p in c.parents})
        if clash := set(self.input_names) & set(cpds):
            raise ModelSpecError(f"context input(s) {sorted(clash)} clash with node names")
        self._order = topological_order(cpds, {v: c.parents for v, c in cpds.items()})
        return self

    # ------------------------------------------------------------------ structure
    @property
    def nodes(self) -> list[str]:
        """Node names in declaration order (the column order of tensor data)."""
        return list(self._cpd_map.keys())

    @property
    def topological_order(self) -> list[str]:
        return list(self.check()._order)

    def parents(self, name: str) -> tuple[str, ...]:
        """The parents of a node, in the order of its CPD.

        :param str name: the node.
        :raises EvidenceError: ``name`` is not a node (the message names it and the nodes)."""
        return self._cpd(name, "parents").parents

    def child_nodes(self, name: str) -> list[str]:
        """The nodes whose CPD lists ``name`` as a parent, in network order.

        :param str name: the node.
        :raises EvidenceError: ``name`` is not a node (the message names it and the nodes)."""
        self._cpd(name, "child_nodes")
        return [v for v, c in self._cpd_map.items() if name in c.parents]

    def cardinality(self, name: str) -> int | None:
        """Number of states of a discrete node, ``None`` for a continuous one.

        :param str name: the node.
        :raises EvidenceError: ``name`` is not a node (the message names it and the nodes)."""
        return self._cpd(name, "cardinality").cardinality

    def _cpd(self, name, method: str) -> CPD:
        """The CPD of node ``name``; an :class:`EvidenceError` naming ``method``, ``name`` and the nodes if none."""
        cpd = self._cpd_map._modules.get(name) if isinstance(name, str) else None  # one look-up: called per node
        if cpd is None:
            raise EvidenceError(f"BayesNet.{method}: unknown node {name!r:.80}{close_match(name, self.nodes)} "
                                f"(nodes: {shown_items(self.nodes)})")
        return cpd

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(p, v) for v, c in self._cpd_map.items() for p in c.parents]

    @property
    def input_names(self) -> list[str]:
        """Context inputs (not nodes) needed by neural CPDs."""
        names: list[str] = []
        for c in self._cpd_map.values():
            names += [u for u in getattr(c, "context", ()) if u not in names]
        return names

    def __repr__(self) -> str:
        return bayes_net_text(self)  # all nodes of a small network, a summary of a large one

    # ------------------------------------------------------------------ pgmpy interop
    @classmethod
    def from_pgmpy(cls, model, *, dtype: torch.dtype = torch.float64, learnable: bool = False) -> "BayesNet":
        """Convert a pgmpy discrete Bayesian network (tabular CPDs) to a :class:`BayesNet`
        (:func:`hybridpgm.graphs.bif_pgmpy.from_pgmpy`); node and state names become strings (``str`` of pgmpy's:
        a network fitted on integer data, states ``1, 2``, gives the states ``'1'``, ``'2'``, in pgmpy's order).

        :param model: the pgmpy network.
        :param dtype: the dtype of the tables (default ``torch.float64``).
        :param bool learnable: store each :class:`~hybridpgm.graphs.cpd.Table`'s logits as a parameter (default
            ``False``: a buffer)."""
        from hybridpgm.graphs.bif import from_pgmpy

        return from_pgmpy(model, dtype=dtype, learnable=learnable, cls=cls)

    def to_pgmpy(self):
        """Convert to a pgmpy ``DiscreteBayesianNetwork`` with ``TabularCPD`` s
        (:func:`hybridpgm.graphs.bif_pgmpy.to_pgmpy`).  The states are this network's state names, strings: one from
        :meth:`from_pgmpy` of a network fitted on integer data comes back with the states ``'1'``, ``'2'``, not ``1``,
        ``2`` (pgmpy's evidence is then ``{"A": "1"}``; ``{"A": 1}`` raises pgmpy's KeyError); a node without state
        names gets pgmpy's integers ``0..k-1`` (named ``'0'``, ``'1'`` ... by :meth:`from_pgmpy`).

        :raises ModelSpecError: a node without a fixed table (a continuous or context-dependent CPD).
        :raises ModuleNotFoundError: pgmpy is not installed."""
        from hybridpgm.graphs.bif import to_pgmpy

        return to_pgmpy(self.check())

