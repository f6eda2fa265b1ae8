"""Pyro's JIT ELBOs on batches of several shapes: one compiled function per shape.

Pyro's ``JitTrace_ELBO``, ``JitTraceEnum_ELBO`` and ``JitTraceMeanField_ELBO`` compile the ELBO with
:func:`pyro.ops.jit.trace`, whose compiled functions are keyed by the *number* of positional arguments and the
keyword arguments (``pyro.ops.jit.CompiledFunction``), not by the tensors' shapes: a function traced on the first
batch is replayed on every later one.  A model whose traced graph keeps the first batch's sizes then fails on a
batch of another size -- :class:`~hybridpgm.graphs.BayesNet`'s ``model`` on :func:`hybridpgm.fit`'s shorter last
batch raised torch's raw "The expanded size of the tensor (4) must match the existing size (2)".

:class:`ShapeKeyedPrograms` passes the ELBO one more keyword argument, the shapes, dtypes and devices of the
batch's tensors (:func:`batch_signature`): Pyro then compiles once per such signature (in :func:`hybridpgm.fit`,
at most the full batch, the last batch and their micro-batches) and replays each compiled function only on
batches of its own shapes.  The model and guide it hands the ELBO drop that argument before calling the user's
programs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from pyro.infer import ELBO, JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO

__all__ = ["SIGNATURE_KWARG", "ShapeKeyedPrograms", "batch_signature", "compiles_on_first_shape"]

#: the keyword argument that carries the batch's signature into Pyro's key of compiled functions
SIGNATURE_KWARG = "_hybridpgm_batch_signature"

#: Pyro's ELBOs whose ``differentiable_loss`` runs a :func:`pyro.ops.jit.trace` compiled function
_PYRO_JIT_ELBOS = (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO)


def compiles_on_first_shape(elbo: ELBO) -> bool:
    """Whether ``elbo.differentiable_loss`` is one of Pyro's JIT compiled functions (an instance of
    ``JitTrace_ELBO``, ``JitTraceEnum_ELBO`` or ``JitTraceMeanField_ELBO``, or a subclass), keyed by the number of
    arguments rather than by their shapes."""
    return isinstance(elbo, _PYRO_JIT_ELBOS)


def batch_signature(value: Any) -> Any:
    """A hashable description of ``value``'s shapes: for a tensor its shape, dtype and device; for a tuple or
    list that of each item; for anything else its type's name (Pyro keys on it, with the number of arguments).

    :param value: a positional argument of the programs (or the tuple of them)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype, value.device
    if isinstance(value, (tuple, list)):
        return tuple(batch_signature(v) for v in value)
    return type(value).__name__


class _WithoutSignature:
    """A program called as ``program(*args, **kwargs)`` without :data:`SIGNATURE_KWARG`."""

    __slots__ = ("program",)

    def __init__(self, program: Callable) -> None:
        self.program = program

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop(SIGNATURE_KWARG, None)
        return self.program(*args, **kwargs)


class ShapeKeyedPrograms:
    """A model and guide for a Pyro JIT ELBO that compiles once per shape of the batch.

    Made once per pair of programs and kept: Pyro's compiled function holds the model and guide of its first
    call, and keys on their ``id``.

    :param model: the user's Pyro model.
    :param guide: its guide."""

    def __init__(self, model: Callable, guide: Callable) -> None:
        self.sources = (model, guide)
        self.model, self.guide = _WithoutSignature(model), _WithoutSignature(guide)

    def of(self, model: Callable, guide: Callable) -> bool:
        """Whether these wrap ``model`` and ``guide`` (an objective whose programs were replaced makes new ones)."""
        return self.sources[0] is model and self.sources[1] is guide

    def differentiable_loss(self, elbo: ELBO, args: tuple, kwargs: dict) -> torch.Tensor:
        """``elbo.differentiable_loss(model, guide, *args, **kwargs)``, compiled by Pyro once per
        :func:`batch_signature` of ``args``.

        :param elbo: a Pyro JIT ELBO (:func:`compiles_on_first_shape`).
        :param args: the programs' positional arguments (the batch).
        :param kwargs: their keyword arguments (plain values: Pyro keys its compiled functions on them too)."""
        return elbo.differentiable_loss(self.model, self.guide, *args, **kwargs,
                                        **{SIGNATURE_KWARG: batch_signature(args)})
