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
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.autograd import forward_ad

__all__ = ["carries_tangent", "kept_by_a_cache", "unversioned"]


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
