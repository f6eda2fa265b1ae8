"""What an :class:`~hybridpgm.infer.EvidenceTable` was built from, to tell whether its network changed since.

A table answers from a snapshot of the CPDs: it raises :class:`~hybridpgm.errors.ConfigError` once the network
is not the one it was built from (:func:`_same`).  The snapshot (:func:`_snapshot`) holds every tensor of the
network with its in-place version and data pointer, and the network's query memo; the values are compared only for
tensors in CPU shared memory, where another process's writes move no counter here.  The snapshot a table keeps
also holds the storages the pointers were read from (:func:`~hybridpgm.tensor_tracking.held_storages`), so that no
data put in place by ``.data =`` can be allocated where the old data was and match its key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.infer.bn_evidence import network_facts
from hybridpgm.infer.bn_factors import shared_on_cpu
from hybridpgm.tensor_tracking import held_storages

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["kept", "rebased"]


def _snapshot(bn: "BayesNet", values: bool = False) -> tuple:
    """The node names, every tensor of the network (held, so that no new tensor can take a freed
    one's identity) with its in-place version and its storage (``.to()`` and ``.double()`` swap a
    parameter's data without a new version), and the network's query memo
    (:func:`~hybridpgm.infer.bn_evidence.network_facts`, which ``bn.plan_cache.clear()`` drops: the remedy
    for an edit through ``.data``, which moves no version counter).  The values are not compared: that
    would read every table on every query (on munin, 0.84 ms a check by versions, 2.1 ms by values) -- except
    for tensors in CPU shared memory, whose writes by another process move no counter here: with ``values``
    (the snapshot a table is built from) a copy of each of those is kept, and compared at every query, and the
    tensors' storages are held (a fourth item; see :func:`kept`)."""
    facts = network_facts(bn)
    if facts.tables_only:  # a table CPD holds its tensors itself: no walk over the module tree
        tensors = [t for c in facts.cpds.values() for t in (*c._parameters.values(), *c._buffers.values())
                   if t is not None]
    else:
        tensors = list(bn._tensors())
    held = [(t, (t._version, t.data_ptr(), t.dtype)) for t in tensors]
    if values:
        return kept((tuple(facts.nodes), held, facts), [t.detach().clone() if shared_on_cpu(t) else None
                                                         for t in tensors])
    return tuple(facts.nodes), held, facts


def kept(now: tuple, copies: list) -> tuple:
    """The snapshot ``now`` (just taken, of tensors not changed since) as a table keeps it: each tensor with the
    value copy of ``copies`` (``None`` but in CPU shared memory), and a fourth item holding the tensors' storages
    now (:func:`~hybridpgm.tensor_tracking.held_storages`), so that the data pointers the snapshot compares cannot
    be taken by other data while the table lives: after ``cpd.logits.data = new`` the old storage stays, so a
    later replacement cannot be allocated at its address, at the same version, and pass for the built state."""
    return now[0], [(t, key, copy) for (t, key), copy in zip(now[1], copies)], now[2], \
        held_storages(t for t, _ in now[1])


def rebased(built: tuple, now: tuple) -> tuple:
    """``built`` with the versions and storages of ``now`` (a snapshot of the same tensors taken after the build
    moved their counters, as a query's restore of a network's buffers does), keeping ``built``'s value copies."""
    return kept(now, [copy for _, _, copy in built[1]])


def _same(now: tuple, built: tuple) -> bool:
    """Whether the network's snapshot ``now`` is the one ``built`` (a snapshot with ``values``) was taken of."""
    return now[2] is built[2] and now[0] == built[0] and len(now[1]) == len(built[1]) and all(
        s is t and u == v and (copy is None or torch.equal(copy, t))
        for (s, u), (t, v, copy) in zip(now[1], built[1]))
