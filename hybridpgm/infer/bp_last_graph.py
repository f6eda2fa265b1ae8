"""The binary fast path's plan of :class:`~hybridpgm.infer.BeliefPropagation`, remembered for the last graph.

Calling BP again on the same, unchanged :class:`~hybridpgm.graphs.factor_graph.FactorGraph` skips the host check of
:meth:`~hybridpgm.infer.bp_engine.BinaryPairwise.applies` (one read of ``valid.all()``) and the structure lookup.
The graph and its tensors (``valid``, each group's ``variables``) are held by weak references, with the keys of the
tensors (:func:`~hybridpgm.tensor_tracking.value_key`: version, data pointer, shape, strides, dtype) and the
storages those were read from (:func:`~hybridpgm.tensor_tracking.held_storages`).  A version counter alone, as
before, missed ``fg.valid.data = clamped`` (the fast path ran, ignoring the clamped states) and
``variables.data = variables.t()``.  The memo goes when the graph or one of its tensors is freed, so its held
storages do not outlive them.  Tensors without a version counter or storage of their own
(:func:`~hybridpgm.tensor_tracking.unversioned`: inference tensors, a :mod:`torch.func` transform's wrappers, dead
once it returns) are not remembered.
"""

from __future__ import annotations

import functools
import weakref
from typing import Callable

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.tensor_tracking import held_storages, unversioned, value_key

__all__ = ["LastGraphPlan"]


class LastGraphPlan:
    """The plan of the last graph :meth:`get` was asked for, while that graph and its tensors are unchanged."""

    __slots__ = ("_entry", "__weakref__")

    def __init__(self):
        #: (weak references to the graph and its tensors, the tensors' keys, the plan, the storages read) or None
        self._entry = None

    def __reduce__(self):
        """A copy (``copy.deepcopy``, pickling) remembers nothing: the entry names this process's graph."""
        return LastGraphPlan, ()

    def get(self, fg: FactorGraph, build: Callable[[], object]):
        """The plan remembered for ``fg`` if it is the graph last asked for, in the same state; else ``build()``,
        remembered for it.

        :param fg: the factor graph.
        :param build: makes the plan of ``fg`` (``None`` where the fast path does not apply).
        """
        tensors = (fg.valid,) + tuple(g.variables for g in fg.groups)
        if any(unversioned(t) for t in tensors):
            return build()
        keys = tuple(map(value_key, tensors))
        entry = self._entry
        if entry is not None and len(entry[0]) == len(tensors) + 1 and entry[0][0]() is fg \
                and all(r() is t for r, t in zip(entry[0][1:], tensors)) and entry[1] == keys:
            return entry[2]
        plan = build()
        forget = functools.partial(_forget, weakref.ref(self))
        self._entry = (tuple(weakref.ref(x, forget) for x in (fg, *tensors)), keys, plan, held_storages(tensors))
        return plan


def _forget(owner: weakref.ref, ref: weakref.ref) -> None:
    """A weak reference's callback: the graph or a tensor of ``owner``'s entry was freed, so the entry (and the
    storages it holds) goes."""
    memo = owner()
    if memo is not None and memo._entry is not None and any(r is ref for r in memo._entry[0]):
        memo._entry = None
