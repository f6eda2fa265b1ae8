"""The CPD map of a :class:`~hybridpgm.graphs.BayesNet`: a :class:`torch.nn.ModuleDict` whose edits are checked.

``bn.cpds`` is a :class:`CPDDict`.  Reading it is reading a :class:`~torch.nn.ModuleDict`; every way of
*changing* it that :class:`~torch.nn.ModuleDict` offers (``bn.cpds[name] = cpd``, ``del bn.cpds[name]``,
``update``, ``pop``, ``clear``, ``setattr``/``delattr``, ``add_module``/``register_module``; and
``bn.cpds = mapping`` on the network) goes through :func:`edit`, which

* adds a new node exactly as :meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` does (one new name), or
* replaces and removes nodes with the same checks: a valid name and CPD, no cycle, the node's CPD against its
  declared parents and every declared child's CPD against the node's (new) cardinality, and state names that
  still fit; a refused edit changes nothing (no node, binding or state name);

and then clears what the network derived from its CPDs (its topological order, parent/child index, contraction
plans and the ``plan_cache.memo`` of the exact queries), so no query can answer with a replaced table.  A node
whose parent is removed waits for it, as a child declared before its parent does (:meth:`BayesNet.check
<hybridpgm.graphs.BayesNet.check>` refuses a query meanwhile, naming the parent).

The map holds its networks by weak reference (no reference cycle keeps a network alive) and leaves them out of
its pickled state: the network links it again when it is unpickled or deep-copied.  A map of no network behaves
as a plain :class:`~torch.nn.ModuleDict`.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.checks import shown_items
from hybridpgm.graphs.bn_graph import DagIndex
from hybridpgm.graphs.cpd_base import CPD

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["CPDDict", "assign_all", "check_node_name", "checked_state_names", "edit", "link", "owners", "put"]


class CPDDict(nn.ModuleDict):
    """A :class:`torch.nn.ModuleDict` of CPDs whose edits a :class:`~hybridpgm.graphs.BayesNet` checks
    (:func:`edit`); its keys, state-dict keys and reading methods are the :class:`~torch.nn.ModuleDict`'s."""

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_CPDDict__owners", None)  # weak references do not pickle; the network links its copy again
        return state

    def __setitem__(self, key: str, module) -> None:
        edit(self, {key: module}, ())

    def __delitem__(self, key: str) -> None:
        edit(self, {}, (key,))

    def update(self, modules) -> None:
        """Add or replace several nodes at once, checked together (a refused update changes nothing)."""
        if not owners(self):
            return super().update(modules)
        if isinstance(modules, (Mapping, nn.ModuleDict)):
            items = list(modules.items())
        else:
            items = []
            for j, m in enumerate(modules):
                if not isinstance(m, (tuple, list)) or len(m) != 2:
                    raise ModelSpecError(f"BayesNet.cpds.update: element #{j} of the sequence should be a (node, "
                                         f"CPD) pair, got {type(m).__name__}")
                items.append(tuple(m))
        edit(self, dict(items), ())

    def pop(self, key: str):
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        edit(self, {}, tuple(self._modules))

    def __setattr__(self, name: str, value) -> None:
        if (isinstance(value, nn.Module) or (value is None and name in self._modules)) and owners(self):
            self[name] = value
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._modules and owners(self):
            del self[name]
        else:
            super().__delattr__(name)

    def add_module(self, name: str, module) -> None:
        if owners(self):
            self[name] = module
        else:
            super().add_module(name, module)

    register_module = add_module


def link(cpds: CPDDict, bn: "BayesNet") -> None:
    """Make ``bn`` one of the networks ``cpds`` notifies (a shallow copy of a network shares its map).  Module-level
    functions, not methods: a node may take any name a plain :class:`~torch.nn.ModuleDict` allows."""
    held = cpds.__dict__.get("_CPDDict__owners")
    if held is None:
        held = cpds.__dict__["_CPDDict__owners"] = weakref.WeakSet()
    held.add(bn)


def owners(cpds: nn.ModuleDict) -> list:
    """The live networks ``cpds`` belongs to."""
    return list(cpds.__dict__.get("_CPDDict__owners", ()))


def put(cpds: nn.ModuleDict, name: str, cpd) -> None:
    """Store ``cpd`` under ``name`` unchecked (:meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` checks it)."""
    nn.Module.add_module(cpds, name, cpd)


def assign_all(cpds: CPDDict, value) -> None:
    """``bn.cpds = value``: the nodes of the mapping ``value`` replace all of ``cpds``'s, checked as one
    :func:`edit` (a node that stays with its cardinality keeps its state names).

    :raises ModelSpecError: ``value`` is not a mapping node -> CPD, or :func:`edit` refuses it."""
    if not isinstance(value, (Mapping, nn.ModuleDict)):
        raise ModelSpecError(f"BayesNet.cpds must be a mapping node name -> CPD, got {type(value).__name__}; to "
                             "change nodes, set bn.cpds[name] = cpd or call bn.add")
    edit(cpds, dict(value.items()), tuple(cpds._modules))


def check_node_name(name, cpds: nn.ModuleDict) -> None:
    """Refuse a name :meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` refuses for a new node (not checked:
    whether it is declared already).

    :raises ModelSpecError: naming the node and why."""
    if not isinstance(name, str) or not name or "." in name:
        raise ModelSpecError(f"node name {name!r} must be a non-empty string without '.'")
    if name == "data":
        raise ModelSpecError("node name 'data' is the name of the plate of BayesNet.model (Pyro refuses a "
                             "sample site of that name); rename the node")
    if name not in cpds and hasattr(cpds, name):  # nn.ModuleDict would refuse it with a raw KeyError
        other = name + "_"
        while hasattr(cpds, other):
            other += "_"
        raise ModelSpecError(f"node name {name!r} is reserved: BayesNet holds its CPDs in a torch.nn.ModuleDict, "
                             f"of which {name!r} is an attribute ({type(getattr(cpds, name)).__name__}); "
                             f"rename the node, e.g. {other!r}")


def edit(cpds: CPDDict, puts: dict, drops: tuple) -> None:
    """Remove the nodes ``drops``, then set ``puts`` (node -> CPD), checked as a whole for every network of
    ``cpds``; see the module docstring.

    :raises ModelSpecError: a name or CPD :meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` would refuse, a
        cycle, a CPD that does not fit a declared parent or child, or state names of a node whose new CPD has
        another cardinality; naming the node.  Nothing changes.
    :raises KeyError: removing a node that is not declared (as any dict)."""
    nets = owners(cpds)
    for d in drops:
        if d not in cpds._modules:
            raise KeyError(f"node {d!r} is not declared (nodes: {shown_items(list(cpds._modules))})")
    if not nets:
        for d in drops:
            del cpds._modules[d]
        for name, c in puts.items():
            nn.ModuleDict.__setitem__(cpds, name, c)
        return
    bn = nets[0]
    if not drops and all(name in cpds._modules and cpds._modules[name] is c for name, c in puts.items()):
        return  # every node set to the CPD it has: nothing changes (the caches and evidence tables stay valid)
    if not drops and len(puts) == 1:
        name, c = next(iter(puts.items()))
        if name not in cpds._modules:
            bn.add(name, c)  # one new node: exactly add
            _forget(nets)
            return
        if _same_shape(cpds._modules[name], c):
            _replace_same_shape(cpds, nets, name, c)
            return
    old = dict(cpds._modules)
    after = {v: c for v, c in old.items() if v not in drops}
    for name, c in puts.items():
        if name not in after:
            check_node_name(name, cpds)
        if not isinstance(c, CPD):
            raise ModelSpecError(f"node {name!r}: expected a CPD, got {type(c).__name__} (BayesNet.cpds holds "
                                 "the CPDs of the network's nodes)")
        c.validate(name)
        if name in c.parents:
            raise ModelSpecError(f"node {name!r} cannot be its own parent")
        after[name] = c
    changed = [v for v, c in after.items() if old.get(v) is not c]
    _check_states(bn, after, old)
    dag = DagIndex({v: c.parents for v, c in after.items() if v not in changed})  # a part of the old, acyclic DAG
    for v in changed:
        cycle = dag.cycle_through(v, after[v].parents)
        if cycle:
            raise ModelSpecError(f"setting node {v!r} creates the cycle {' -> '.join(cycle)}")
        dag.insert(v, after[v].parents)
    _bind(after, set(changed) | set(drops))
    for d in drops:
        del cpds._modules[d]
    for name, c in puts.items():
        put(cpds, name, c)
    for b in nets:
        for v in drops:
            if v not in after:
                b.state_names.pop(v, None)
    _forget(nets, DagIndex({v: c.parents for v, c in after.items()}))


def _same_shape(prior, c) -> bool:
    """Whether CPD ``c`` has ``prior``'s parents (in order) and known cardinality: replacing one by the other
    changes neither the graph nor any child's or state name's fit."""
    return (isinstance(c, CPD) and c.cardinality is not None and c.cardinality == prior.cardinality
            and tuple(c.parents) == tuple(prior.parents))


def _replace_same_shape(cpds: CPDDict, nets: list, name: str, c: CPD) -> None:
    """Replace node ``name``'s CPD by ``c`` of the same parents and cardinality (:func:`_same_shape`): checked and
    bound as :func:`edit` would, without rebuilding the network's graph index (swapping every table of an
    ``N``-node network one by one is then ``O(N)`` in all, not ``O(N^2)``)."""
    c.validate(name)
    if all(p in cpds._modules for p in c.parents):
        node, parent_cards = c.node, c.parent_cards
        try:
            c.bind(name, {p: cpds._modules[p].cardinality for p in c.parents})
        except BaseException:
            c.node, c.parent_cards = node, parent_cards
            raise
    put(cpds, name, c)
    _forget(nets)


def _check_states(bn: "BayesNet", after: dict, old: dict) -> None:
    for v, states in bn.state_names.items():
        if v in after and after[v] is not old.get(v) and after[v].cardinality != len(states):
            raise ModelSpecError(
                f"node {v!r} has the state names [{shown_items(states)}], and its new CPD has cardinality "
                f"{after[v].cardinality}; remove the node first (del bn.cpds[{v!r}]) and add the new CPD with its "
                f"states (bn.add({v!r}, cpd, states=[...]))")


def _bind(after: dict, touched: set) -> None:
    """Bind each CPD of ``after`` that is new or has a new or removed parent, once all its parents are declared
    (:meth:`~hybridpgm.graphs.cpd_base.CPD.bind` checks it against their cardinalities); a refusal restores every
    binding."""
    todo = [(v, c) for v, c in after.items() if (v in touched or any(p in touched for p in c.parents))
            and all(p in after for p in c.parents)]
    bound = [(c, c.node, c.parent_cards) for _, c in todo]
    try:
        for v, c in todo:
            try:
                c.bind(v, {p: after[p].cardinality for p in c.parents})
            except ModelSpecError as e:
                if v in touched:
                    raise
                changed = [p for p in c.parents if p in touched]
                raise ModelSpecError(f"setting node(s) {changed} (cardinality "
                                     f"{[after[p].cardinality for p in changed]}) conflicts with their child: "
                                     f"{e}") from e
    except BaseException:
        for c, node, parent_cards in bound:
            c.node, c.parent_cards = node, parent_cards
        raise


def _forget(owners: list, dag: DagIndex | None = None) -> None:
    """Clear what each network derived from its CPDs: order, DAG index, plans and query memo."""
    for b in owners:
        if dag is not None:
            b._dag = dag if b is owners[0] else DagIndex(dag.parents)
        b._order = None
        b.plan_cache.clear()


def checked_state_names(name: str, cpd: CPD, states) -> list:
    """``states``, the state names :meth:`~hybridpgm.graphs.BayesNet.add` was given for node ``name`` of CPD ``cpd``,
    checked (distinct hashable strings, one per state of a discrete node) and returned as a list.

    :raises ModelSpecError: naming the node and what is wrong with the names."""
    if cpd.cardinality is None:
        raise ModelSpecError(f"node {name!r} is continuous; state names are for discrete nodes only")
    if isinstance(states, (str, bytes)) or not isinstance(states, Sequence):
        raise ModelSpecError(f"node {name!r}: states must be a list of {cpd.cardinality} names, got {states!r}")
    states = list(states)
    if not_text := [s for s in states if not isinstance(s, str)]:  # evidence given as a number is an index
        raise ModelSpecError(f"node {name!r}: state names must be strings, got [{shown_items(not_text)}] in "
                             f"[{shown_items(states)}]; a number given as evidence is read as a state's "
                             "index, so a name 1 would be ambiguous: name the states "
                             f"[{shown_items([str(s) for s in states])}]")
    if len(states) != cpd.cardinality:
        raise ModelSpecError(f"node {name!r}: {len(states)} state names [{shown_items(states)}] for "
                             f"cardinality {cpd.cardinality}")
    try:
        distinct = len(set(states)) == len(states)
    except TypeError:
        raise ModelSpecError(f"node {name!r}: state names must be hashable, got [{shown_items(states)}]") from None
    if not distinct:
        dup = sorted(str(s) for s, count in collections.Counter(states).items() if count > 1)
        raise ModelSpecError(f"node {name!r}: state names must be distinct, [{shown_items(dup)}] repeat in "
                             f"[{shown_items(states)}]")
    return states
