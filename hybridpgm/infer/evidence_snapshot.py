"""What an :class:`~hybridpgm.infer.EvidenceTable` was built from, to tell whether its network changed since.

A table answers from a snapshot of the CPDs: it raises :class:`~hybridpgm.errors.ConfigError` once the network
is not the one it was built from (:func:`_same`).  The snapshot (:func:`_snapshot`) holds every tensor of the
network with its in-place version, data pointer, strides and dtype (:func:`_key`), and the network's query memo;
the values are compared only for tensors in CPU shared memory, where another process's writes move no counter
here.  The snapshot a table keeps also holds the storages the pointers were read from
(:func:`~hybridpgm.tensor_tracking.held_storages`), so that no data put in place by ``.data =`` can be allocated
where the old data was and match its key.  For a network with a CPD other than a table the snapshot also holds
every module's ``training`` flag and the modules themselves (:func:`_tensors`): a dropout or batch-norm layer
answers otherwise in the other mode, so ``bn.eval()`` or ``bn.train()`` after the build retires the table
(:func:`mode_changed` tells that case), and so does a layer replaced, added or removed, one without tensors too
(``net[1] = nn.ReLU()`` for an ``nn.Tanh``; :func:`module_changes` names its path for the message).  The modules are
held, as the storages are, so that no new module can take a replaced one's identity while the table lives.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import torch

from hybridpgm.infer.bn_evidence import network_facts
from hybridpgm.infer.bn_factors import shared_on_cpu
from hybridpgm.tensor_tracking import held_storages

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["kept", "mode_changed", "module_changes", "rebased"]


def _keys(tensors: list) -> list:
    """Each tensor's ``(version, data pointer, strides, dtype)``: what the check of every query compares.

    :func:`~hybridpgm.tensor_tracking.value_key` less the shape: the strides tell ``logits.data = logits.t()`` (a
    square table's transpose, at the same address and version: an audit found the table answering for the table
    before it) from the table built; another shape at the same address and strides is a slice of the same rows,
    which no table of the network's cardinalities is.  Reading the shape too cost a third more per check (munin:
    1.24 -> 1.68 ms; with the strides and the list comparisons of :func:`_same`, 1.33 ms)."""
    return [(t._version, t.data_ptr(), t.stride(), t.dtype) for t in tensors]


def _tensors(bn: "BayesNet", facts) -> tuple[list, tuple | None, tuple | None]:
    """``(tensors, modes, modules)``: every floating tensor of the network, in a fixed order (the parameters, then
    the buffers), every module's ``training`` flag and every module (of :meth:`~torch.nn.Module.modules`, compared by
    identity: a layer without tensors replaced changes no tensor) -- in one walk over the module tree (a tensor two
    modules share is listed twice: the same in every snapshot); of an all-table network without a walk (a table CPD
    holds its tensors itself and answers the same in either mode; a CPD replaced brings other tensors: ``modes`` and
    ``modules`` are ``None``)."""
    if not facts.tables_only:
        parameters: list = []
        buffers: list = []
        modes = []
        modules = tuple(bn.modules())
        for m in modules:
            modes.append(m.training)
            parameters += m._parameters.values()
            buffers += m._buffers.values()
        return ([t for t in parameters + buffers if t is not None and torch.is_floating_point(t)], tuple(modes),
                modules)
    tensors: list = []
    for c in facts.cpds.values():
        tensors += c._parameters.values()
        tensors += c._buffers.values()
    return [t for t in tensors if t is not None], None, None


def _snapshot(bn: "BayesNet", values: bool = False) -> tuple:
    """``(node names, tensors, query memo, keys, modes, modules)``: every tensor of the network (held, so that no new
    tensor can take a freed one's identity) and its key (:func:`_keys`: its in-place version, its storage -- ``.to()``
    and ``.double()`` swap a parameter's data without a new version --, strides and dtype), and the network's query memo
    (:func:`~hybridpgm.infer.bn_evidence.network_facts`, which ``bn.plan_cache.clear()`` drops: the remedy for an edit
    through ``.data`` that keeps all of them, as a copy into the old storage by another tensor).  The values are not
    compared: that would read every table on every query (on munin, 1.3 ms a check by keys, 2.1 ms by values) -- except
    for tensors in CPU shared memory, whose writes by another process move no counter here: with ``values`` (the
    snapshot a table is built from) a copy of each of those is kept, and compared at every query, and the tensors'
    storages are held (see :func:`kept`).  ``modes``, ``modules``: see :func:`_tensors`."""
    facts = network_facts(bn)
    tensors, modes, modules = _tensors(bn, facts)
    now = facts.nodes, tensors, facts, _keys(tensors), modes, modules  # the memo's nodes: compared, not copied
    if values:
        return kept(now, [t.detach().clone() if shared_on_cpu(t) else None for t in tensors])
    return now


def kept(now: tuple, copies: list) -> tuple:
    """The snapshot ``now`` (just taken, of tensors not changed since) as a table keeps it: ``(node names,
    [(tensor, key, value copy)], query memo, held storages, tensors, keys, [(copy, tensor)], modes, modules, module
    paths)`` -- the copies of
    ``copies`` (``None`` but in CPU shared memory), and the tensors' storages now
    (:func:`~hybridpgm.tensor_tracking.held_storages`), so that the data pointers the snapshot compares cannot be
    taken by other data while the table lives: after ``cpd.logits.data = new`` the old storage stays, so a later
    replacement cannot be allocated at its address, at the same version, and pass for the built state.  The modules
    are held likewise, with their paths (for :func:`module_changes`)."""
    tensors, keys, modules = now[1], now[3], now[5]
    return (list(now[0]), list(zip(tensors, keys, copies)), now[2], held_storages(tensors), tensors, keys,
            [(copy, t) for t, copy in zip(tensors, copies) if copy is not None], now[4], modules,
            _paths(modules))


def _paths(modules: tuple | None) -> tuple | None:
    """The path of each of ``modules`` (the walk of :func:`_tensors`) in the network, its root first (``""``)."""
    if modules is None or not modules:
        return None
    return tuple(name for name, _ in modules[0].named_modules())


def _same_modules(now: tuple | None, built: tuple | None) -> bool:
    """Whether two walks of :func:`_tensors` met the same module objects in the same order."""
    if now is None or built is None:
        return now is built
    return len(now) == len(built) and all(map(operator.is_, now, built))


def rebased(built: tuple, now: tuple) -> tuple:
    """``built`` with the versions and storages of ``now`` (a snapshot of the same tensors taken after the build
    moved their counters, as a query's restore of a network's buffers does), keeping ``built``'s value copies."""
    return kept(now, [copy for _, _, copy in built[1]])


def _same(now: tuple, built: tuple) -> bool:
    """Whether the network's snapshot ``now`` is the one ``built`` (a snapshot with ``values``; a stale table's
    is ``(None, [], None)``) was taken of: the same memo and nodes, the same keys (compared as lists), the same
    tensors (by identity), the same modules (by identity) and their modes (:func:`_tensors`) and, in CPU shared
    memory, the same values."""
    return (len(built) > 4 and now[2] is built[2] and now[0] == built[0] and now[3] == built[5]
            and now[4] == built[7] and all(map(operator.is_, now[1], built[4])) and _same_modules(now[5], built[8])
            and all(torch.equal(c, t) for c, t in built[6]))


def mode_changed(now: tuple, built: tuple) -> bool:
    """Whether the snapshot ``now`` differs from ``built`` in a module's ``training`` flag only, of the same modules
    and tensors (``bn.train()``/``bn.eval()`` after the build, not a replaced layer or an updated parameter, which
    the general message names)."""
    return (len(built) > 4 and now[2] is built[2] and now[4] is not None and built[7] is not None
            and len(now[4]) == len(built[7]) and now[4] != built[7] and now[3] == built[5]
            and all(map(operator.is_, now[1], built[4])) and _same_modules(now[5], built[8]))


def module_changes(now: tuple, built: tuple, limit: int = 3) -> str:
    """The modules replaced, added or removed between the table's snapshot ``built`` and ``now``, for the message
    of a stale table: ``"the module at 'cpds.wet.net.1' was replaced (Tanh -> ReLU)"`` (by path, at most ``limit``
    of them, then how many more), or ``""`` where the modules are the same (or either snapshot has none)."""
    if len(built) < 10 or built[8] is None or now[5] is None or _same_modules(now[5], built[8]):
        return ""
    was = dict(zip(built[9], built[8]))
    is_now = dict(zip(_paths(now[5]), now[5]))
    changes = []
    for path in [*was, *(p for p in is_now if p not in was)]:
        old, new = was.get(path), is_now.get(path)
        if old is new:
            continue
        changes.append(f"the module at '{path}' was "
                       + (f"added ({type(new).__name__})" if old is None else
                          f"removed ({type(old).__name__})" if new is None else
                          f"replaced ({type(old).__name__} -> {type(new).__name__})"))
    shown = changes[:limit] + ([f"{len(changes) - limit} more"] if len(changes) > limit else [])
    return "; ".join(shown)
