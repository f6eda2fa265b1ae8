"""What an :class:`~hybridpgm.infer.EvidenceTable` was built from, to tell whether its network changed since.

A table answers from a snapshot of the CPDs: it raises :class:`~hybridpgm.errors.ConfigError` once the network
is not the one it was built from (:func:`_same`).  The snapshot (:func:`_snapshot`) holds every tensor of the
network with its in-place version and storage, and the network's query memo; the values are compared only for
tensors in CPU shared memory, where another process's writes move no counter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.infer.bn_evidence import network_facts
from hybridpgm.infer.bn_factors import shared_on_cpu

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.bayes_net import BayesNet

__all__ = ["rebased"]


def _snapshot(bn: "BayesNet", values: bool = False) -> tuple:
    """The node names, every tensor of the network (held, so that no new tensor can take a freed
    one's identity) with its in-place version and its storage (``.to()`` and ``.double()`` swap a
    parameter's data without a new version), and the network's query memo
    (:func:`~hybridpgm.infer.bn_evidence.network_facts`, which ``bn.plan_cache.clear()`` drops: the remedy
    for an edit through ``.data``, which moves no version counter).  The values are not compared: that
    would read every table on every query (on munin, 0.84 ms a check by versions, 2.1 ms by values) -- except
    for tensors in CPU shared memory, whose writes by another process move no counter here: with ``values``
    (the snapshot a table is built from) a copy of each of those is kept, and compared at every query."""
    facts = network_facts(bn)
    if facts.tables_only:  # a table CPD holds its tensors itself: no walk over the module tree
        tensors = [t for c in facts.cpds.values() for t in (*c._parameters.values(), *c._buffers.values())
                   if t is not None]
    else:
        tensors = list(bn._tensors())
    held = [(t, (t._version, t.data_ptr(), t.dtype)) for t in tensors]
    if values:
        held = [(t, key, t.detach().clone() if shared_on_cpu(t) else None) for t, key in held]
    return tuple(facts.nodes), held, facts


def rebased(built: tuple, now: tuple) -> tuple:
    """``built`` with the versions and storages of ``now`` (a snapshot of the same tensors taken after the build
    moved their counters, as a query's restore of a network's buffers does), keeping ``built``'s value copies."""
    return now[0], [(t, key, copy) for (t, key), (_, _, copy) in zip(now[1], built[1])], now[2]


def _same(now: tuple, built: tuple) -> bool:
    """Whether the network's snapshot ``now`` is the one ``built`` (a snapshot with ``values``) was taken of."""
    return now[2] is built[2] and now[0] == built[0] and len(now[1]) == len(built[1]) and all(
        s is t and u == v and (copy is None or torch.equal(copy, t))
        for (s, u), (t, v, copy) in zip(now[1], built[1]))
