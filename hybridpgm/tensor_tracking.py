"""What a cache keyed on a tensor, or a detached copy of it, would lose.

Several models keep work done on a tensor for as long as the tensor is unchanged -- a Bayes net's normalised
table, a :class:`~hybridpgm.graphs.cpd.Table`'s "has a structural zero" -- keyed on its version counter and
storage (``tensor._version``, ``tensor.data_ptr()``), and a :class:`~hybridpgm.graphs.MarkovNet` copies a fixed
table given as a tensor (``tensor.detach().clone()``).  Two kinds of tensor do not fit that:

* :func:`unversioned`: an inference tensor (made under :func:`torch.inference_mode`) has no version counter, and
  a tensor wrapped by a :mod:`torch.func` transform (``vmap``, ``grad``, ``jvp``, ``jacrev``, ``jacfwd``,
  ``hessian``) has no storage of its own: neither can key a cache;
* :func:`carries_tangent`: a tensor with a forward-mode derivative has ``requires_grad=False``, yet a detached
  copy or a cached value computed from it drops that derivative (silently: the tangent of the result is zero,
  or ``None``), whether it is a :mod:`torch.autograd.forward_ad` dual tensor or the input of
  :func:`torch.func.jvp` / :func:`torch.func.jacfwd` (a tensor wrapped by the transform).

Both are flag reads (a fraction of a microsecond), cheap enough for a query's hot path; outside
:func:`torch.autograd.forward_ad.dual_level` the tangent is not looked up at all.

A key of version and data pointer needs the storage it was read from to stay alive (:func:`held_storages`).  The
version counter moves with every in-place write through torch, but not with ``tensor.data = other`` (the tensor
keeps its own counter; ``module.to`` swaps a parameter's data so), which only the data pointer tells.  Once the
old storage is freed, though, a later allocation of the same size may be placed at its address (CUDA's caching
allocator gives a freed block to the next request it fits; glibc's ``malloc`` may, among other allocations),
and a tensor whose data is replaced again by that allocation has the key of the old values: the cache answers
from them.  A cache entry therefore holds the storages its pointers were read from: while it lives no allocation
can take their addresses, so a matching pointer is the same storage (or memory aliased on purpose, as
:func:`torch.frombuffer` or a second tensor ``set_`` on it makes, whose writes no counter of the tensor sees
either).  That costs nothing per query; the memory of a replaced tensor is kept until the entry is rebuilt (at
the next query of it) or dropped.

A cache of values read from a tensor keys on more than its version and data pointer (:func:`value_key`):
``t.data = t.t()`` on a square table puts a view of the *same* storage, at the same address and version, in
place, whose values are the transpose -- the shape, strides and dtype say which values a data pointer stands for.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch.autograd import forward_ad

__all__ = ["HeldStorages", "carries_tangent", "held_storages", "kept_by_a_cache", "unversioned", "value_key",
           "without_graph"]


def unversioned(t: torch.Tensor) -> bool:
    """Whether ``t`` has no version counter or storage of its own to key a cache on.

    :param t: any tensor.
    :returns: ``True`` for an inference tensor or a tensor wrapped by a :mod:`torch.func` transform."""
    return t.is_inference() or torch._C._functorch.is_functorch_wrapped_tensor(t)


def carries_tangent(t: torch.Tensor) -> bool:
    """Whether ``t`` may carry a forward-mode derivative that a detached copy would drop: a tensor wrapped by a
    :mod:`torch.func` transform (all of ``jvp``'s and ``jacfwd``'s inputs and what is computed from them; also
    ``vmap``'s and ``grad``'s, which a copy taken as it is loses nothing of, but which cannot be told apart
    cheaply), or a :mod:`torch.autograd.forward_ad` dual tensor of the current level.

    :param t: any tensor.
    :returns: ``False`` for a plain tensor (``requires_grad`` is not looked at: see ``t.requires_grad``)."""
    if torch._C._functorch.is_functorch_wrapped_tensor(t):
        return True
    # with no dual level open no tensor has a tangent (closing a level clears them): the lookup (a microsecond) is
    # skipped; a torch without the level counter looks every time
    return getattr(forward_ad, "_current_level", 0) >= 0 and forward_ad.unpack_dual(t).tangent is not None


def without_graph(t: torch.Tensor) -> torch.Tensor:
    """``t`` without its autograd graph, keeping its forward-mode derivative: ``t.detach()`` for a tensor that
    carries none (:func:`carries_tangent`), else a copy made under :func:`torch.no_grad` (which records no graph
    but, as forward-mode AD does not depend on grad mode, keeps the tangent that ``detach`` drops).

    For a result computed with autograd on only to be differentiated inside a query (marginals as the gradient
    of :math:`\\log Z`), returned without the graph when the caller asked for none.

    :param t: any tensor.
    :returns: a tensor of ``t``'s values with ``requires_grad=False``; a copy where ``t`` carries a tangent."""
    if not carries_tangent(t):
        return t.detach()
    with torch.no_grad():
        return t.clone()


def value_key(t: torch.Tensor) -> tuple:
    """What must not have changed for values read from ``t`` to hold: its version counter (in-place writes,
    ``set_``), data pointer (``t.data = other``; the storage is then held by the entry: :func:`held_storages`),
    shape, strides and dtype (``t.data = t.t()``, ``t.data = t.view(dtype)``: the same storage and address, other
    values).  The storage offset is not needed: it is in the data pointer, and a held storage cannot be another
    storage at that address.  Five attribute reads, about a microsecond.

    :param t: a strided tensor with a version counter and storage (not :func:`unversioned`).
    :returns: ``(version, data pointer, shape, strides, dtype)``, compared with ``==``."""
    return t._version, t.data_ptr(), t.shape, t.stride(), t.dtype


def held_storages(tensors: Iterable[torch.Tensor]) -> HeldStorages:
    """The storages of ``tensors``, for a cache entry keyed on their data pointers to hold (see the module's
    docstring): while the entry holds them, no allocation can be placed at those addresses, so a tensor whose
    data was replaced cannot match the key again by landing where the old data was.

    :param tensors: the tensors whose ``data_ptr()`` the entry's key holds.
    :returns: a :class:`HeldStorages`, one :class:`torch.UntypedStorage` per tensor (``None`` for a tensor without
        storage, as a sparse one, whose key holds no pointer)."""
    return HeldStorages(map(_storage, tensors))


class HeldStorages(tuple):
    """The storages a cache entry holds (:func:`held_storages`).  A deep copy of the object holding the entry holds
    the same storages (its key names their addresses: they stay reserved while either entry lives); a pickle holds
    none -- addresses are this process's, and torch cannot pickle an untyped storage by itself -- and is an empty
    plain ``tuple``, which any version of hybridpgm reads."""

    __slots__ = ()

    def __reduce__(self):
        return tuple, ()

    def __deepcopy__(self, memo) -> "HeldStorages":
        return self


def _storage(t: torch.Tensor) -> torch.UntypedStorage | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # no storage of its own (a sparse tensor)
        return None


@contextlib.contextmanager
def kept_by_a_cache() -> Iterator[None]:
    """Make the tensors a cache keeps from call to call (index tensors, plans): with inference mode off (a tensor
    made in it could not be saved for backward outside it) and outside every :mod:`torch.func` transform.

    Under ``grad``, ``vjp``, ``jacrev`` or ``hessian`` every tensor made, from a factory call too, is that level's
    wrapper, dead once the transform returns: kept, the next call under a transform fails on it with torch's
    ``INTERNAL ASSERT FAILED ... escaped?``.  Only for tensors made from plain values or plain tensors (what the
    caches key on), never from a transform's inputs."""
    with torch.inference_mode(False), torch._C._DisableFuncTorch():
        yield
