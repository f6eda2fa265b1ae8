"""A small cache of plans derived from a graph's index tensors, keyed by the tensors themselves.

An inference algorithm on a :class:`~hybridpgm.graphs.factor_graph.FactorGraph` often first derives a plan from the
graph's *structure* alone -- the factors' variable indices ``[F, k]``, the colouring ``[V]`` -- and then runs on the
potentials: the CSR pattern of belief propagation's binary fast path
(:mod:`~hybridpgm.infer.bp_engine`), the per-colour incidences of Gibbs sampling and mean field
(:func:`~hybridpgm.infer.mrf_colour_blocks.colour_blocks`).  A :class:`~hybridpgm.graphs.MarkovNet` compiles a new
factor graph on every query but keeps its index tensors (its scope buffers, its colouring) from call to call, so the
plan can be kept too, keyed by those tensors: :class:`StructureCache`.

A key is the identity of each tensor together with what must not have changed for the plan to hold (its version
counter, which an in-place change bumps, its data pointer, shape, strides, dtype and device:
:func:`~hybridpgm.tensor_tracking.value_key`; ``index.data = index.t()`` on a square index keeps the pointer and the
version, not the strides), plus any plain values the plan depends on.
Only weak references to the tensors are held: an entry goes when one of its tensors is freed, so the cache never
keeps a network's tensors alive (a plan must hold no view of them), and the least recently used entry goes when
the cache is full.  An entry does hold the tensors' storages as they were when the plan was built
(:func:`~hybridpgm.tensor_tracking.held_storages`): after ``index.data = other`` the old storage stays until the
entry goes, so that no later replacement can be allocated at its address and match the key at the same version.
A tensor made under :func:`torch.inference_mode` has no version counter, and a :mod:`torch.func` transform's wrapper
or a tensor without storage no storage to key by: a plan of one is built every time, never cached.  Plans are built
with inference mode off, so that a plan cached inside ``torch.inference_mode()`` stays usable outside it.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable, Hashable, Sequence, TypeVar

import torch

from hybridpgm.tensor_tracking import held_storages, kept_by_a_cache, unversioned, value_key

__all__ = ["StructureCache"]

_T = TypeVar("_T")


def _state(tensor: torch.Tensor) -> tuple:
    """What must not have changed for a plan of ``tensor`` to hold: its version counter, data pointer (its
    storage then held by the entry), shape, strides and dtype (:func:`~hybridpgm.tensor_tracking.value_key`), and
    device."""
    return value_key(tensor), tensor.device


def _keyable(tensor: torch.Tensor) -> bool:
    """Whether a plan of ``tensor`` may be cached: it has a version counter and storage (not an inference tensor,
    not a :mod:`torch.func` wrapper, which a transform hands even to code that only indexes with the tensor, nor a
    tensor without storage, as under tracing)."""
    if unversioned(tensor):
        return False
    try:
        tensor.data_ptr()
    except RuntimeError:
        return False
    return True


class StructureCache:
    """Plans keyed by tensors (identity and state, held weakly) and plain values, least recently used dropped.

    :param int max_entries: how many plans to keep.
    """

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every plan."""
        self._entries.clear()

    def _forget(self, key, ref) -> None:
        """A weak reference's callback: drop the entry of a freed tensor (if it is still that entry's)."""
        entry = self._entries.get(key)
        if entry is not None and any(r is ref for r in entry[0]):
            self._entries.pop(key, None)

    def get(self, tensors: Sequence[torch.Tensor], extra: Hashable, build: Callable[[], _T]) -> _T:
        """The plan of ``tensors`` and ``extra``: the cached one while every tensor is the same object in the same
        state, else ``build()`` (cached, with inference mode off; built every time for inference tensors,
        :mod:`torch.func` wrappers and tensors without storage).

        :param tensors: the index tensors the plan is derived from.
        :param extra: the plain values it also depends on (sizes, a device), hashable.
        :param build: makes the plan; it must hold no view of ``tensors``.
        """
        if any(not _keyable(t) for t in tensors):
            return build()
        key = (tuple(id(t) for t in tensors), extra)
        hit = self._entries.get(key)
        if hit is not None and all(r() is t for r, t in zip(hit[0], tensors)) \
                and hit[1] == tuple(_state(t) for t in tensors):
            self._entries.move_to_end(key)
            return hit[2]
        with kept_by_a_cache():  # a cached plan must stay usable outside inference mode and after a transform
            plan = build()
        refs = tuple(weakref.ref(t, lambda ref, key=key: self._forget(key, ref)) for t in tensors)
        self._entries[key] = (refs, tuple(_state(t) for t in tensors), plan, held_storages(tensors))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return plan
