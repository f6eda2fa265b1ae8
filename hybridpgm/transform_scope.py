"""Whether code runs under a :mod:`torch.func` transform.

A query that reads values on the host (a check, the choice of an algorithm) cannot run under
:func:`torch.func.vmap`, whose batched tensors hold no one value, and a query that takes a derivative with
``torch.autograd.grad`` is not seen through by forward-mode transforms.  Such queries ask here which
transforms are active, from torch.func's interpreter stack (one level per transform entered, innermost
last):

* :func:`under_vmap`: a :func:`torch.func.vmap` level anywhere in the stack (also the ``vmap`` inside
  :func:`torch.func.jacrev`, :func:`torch.func.jacfwd` and :func:`torch.func.hessian`);
* :func:`under_torch_func`: any level at all (``vmap``, ``grad``, ``vjp``, ``jvp``, ``jacrev``, ``jacfwd``,
  ``hessian``, ``functionalize``);
* :func:`draws_differ_under_vmap`: a ``vmap`` level with ``randomness="different"`` (each row's random draws its
  own).

and :func:`vmap_reads_refused` turns torch's error for a host read under ``vmap`` into a
:class:`~hybridpgm.errors.ConfigError` that names the query and what to do instead.

Plain ``torch.autograd`` (``backward``, ``torch.autograd.grad``), :mod:`torch.autograd.forward_ad` dual tensors
outside a transform, ``torch.no_grad()`` and ``torch.inference_mode()`` are no transform: both answer ``False``
there.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from hybridpgm.errors import ConfigError, HybridPGMError

__all__ = ["draws_differ_under_vmap", "under_torch_func", "under_vmap", "vmap_reads_refused"]


def under_vmap() -> bool:
    """Whether a :func:`torch.func.vmap` transform is active, at any level of torch.func's transform stack (a
    ``vmap`` around or inside a ``grad``, ``jvp``, ... counts).

    :returns: ``True`` inside a ``vmap``'d function, ``False`` elsewhere (no transform, or only others)."""
    stack = torch._C._functorch.get_interpreter_stack() or ()
    return any(level.key() == torch._C._functorch.TransformType.Vmap for level in stack)


def draws_differ_under_vmap() -> bool:
    """Whether a :func:`torch.func.vmap` with ``randomness="different"`` is active at any level: its random draws
    are batched (one per row), so a sampler that writes them into an unbatched buffer in place cannot run.

    :returns: ``False`` outside ``vmap``, and under ``vmap`` with ``randomness="same"`` or ``"error"``."""
    from torch._functorch.pyfunctorch import VmapInterpreter

    stack = torch._C._functorch.get_interpreter_stack() or ()
    return any(level.key() == torch._C._functorch.TransformType.Vmap
               and VmapInterpreter(level).randomness() == "different" for level in stack)


def under_torch_func() -> bool:
    """Whether any :mod:`torch.func` transform is active (``vmap``, ``grad``, ``vjp``, ``jvp``, ``jacrev``,
    ``jacfwd``, ``hessian``, ``functionalize``, at any depth).

    :returns: ``True`` inside a transformed function, ``False`` under plain ``torch.autograd``,
        :mod:`torch.autograd.forward_ad`, ``torch.no_grad()`` or ``torch.inference_mode()`` alone."""
    return torch._C._functorch.peek_interpreter_stack() is not None


@contextlib.contextmanager
def vmap_reads_refused(message: str) -> Iterator[None]:
    """Run the block; where torch refuses a host read in it under :func:`torch.func.vmap` (its
    ``RuntimeError`` naming ``vmap``: a value read in data-dependent control flow, ``.item()``), raise
    :class:`~hybridpgm.errors.ConfigError` with ``message`` instead, from torch's error.

    Nothing is refused up front: a ``vmap`` whose batched inputs the block never reads runs as it did, and
    outside ``vmap``, and for hybridpgm's own errors, nothing changes.  torch's refusal of a random draw under
    ``vmap``'s default ``randomness="error"`` passes through as it is (it names the fix: ``randomness="same"`` or
    ``"different"``).

    :param message: what the query is and what to pass instead (the whole text of the ``ConfigError``).
    :raises ConfigError: as above."""
    try:
        yield
    except RuntimeError as error:
        text = str(error)
        # torch's refusal of a random draw under vmap(randomness="error") is about randomness, not a host read
        if isinstance(error, HybridPGMError) or "vmap" not in text or "randomness" in text or not under_vmap():
            raise
        raise ConfigError(message) from error
