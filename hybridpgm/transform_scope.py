"""Whether code runs under a :mod:`torch.func` transform.

A query that reads values on the host (a check, the choice of an algorithm) cannot run under
:func:`torch.func.vmap`, whose batched tensors hold no one value, and a query that takes a derivative with
``torch.autograd.grad`` is not seen through by forward-mode transforms.  Such queries ask here which
transforms are active, from torch.func's interpreter stack (one level per transform entered, innermost
last):

* :func:`under_vmap`: a :func:`torch.func.vmap` level anywhere in the stack (also the ``vmap`` inside
  :func:`torch.func.jacrev`, :func:`torch.func.jacfwd` and :func:`torch.func.hessian`);
* :func:`under_torch_func`: any level at all (``vmap``, ``grad``, ``vjp``, ``jvp``, ``jacrev``, ``jacfwd``,
  ``hessian``, ``functionalize``).

Plain ``torch.autograd`` (``backward``, ``torch.autograd.grad``), :mod:`torch.autograd.forward_ad` dual tensors
outside a transform, ``torch.no_grad()`` and ``torch.inference_mode()`` are no transform: both answer ``False``
there.
"""

from __future__ import annotations

import torch

__all__ = ["under_torch_func", "under_vmap"]


def under_vmap() -> bool:
    """Whether a :func:`torch.func.vmap` transform is active, at any level of torch.func's transform stack (a
    ``vmap`` around or inside a ``grad``, ``jvp``, ... counts).

    :returns: ``True`` inside a ``vmap``'d function, ``False`` elsewhere (no transform, or only others)."""
    stack = torch._C._functorch.get_interpreter_stack() or ()
    return any(level.key() == torch._C._functorch.TransformType.Vmap for level in stack)


def under_torch_func() -> bool:
    """Whether any :mod:`torch.func` transform is active (``vmap``, ``grad``, ``vjp``, ``jvp``, ``jacrev``,
    ``jacfwd``, ``hessian``, ``functionalize``, at any depth).

    :returns: ``True`` inside a transformed function, ``False`` under plain ``torch.autograd``,
        :mod:`torch.autograd.forward_ad`, ``torch.no_grad()`` or ``torch.inference_mode()`` alone."""
    return torch._C._functorch.peek_interpreter_stack() is not None
