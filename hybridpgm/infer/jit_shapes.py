"""Pyro's JIT ELBOs on batches of several shapes: a private copy of the ELBO, and so one compiled function, per shape.

Pyro's ``JitTrace_ELBO``, ``JitTraceEnum_ELBO`` and ``JitTraceMeanField_ELBO`` compile the ELBO with
:func:`pyro.ops.jit.trace`, whose compiled functions are keyed by the *number* of positional arguments and the
keyword arguments (``pyro.ops.jit.CompiledFunction``), not by the tensors' shapes: a function traced on the first
batch is replayed on every later one.  A model whose traced graph keeps the first batch's sizes then fails on a
batch of another size -- :class:`~hybridpgm.graphs.BayesNet`'s ``model`` on :func:`hybridpgm.fit`'s shorter last
batch raised torch's raw "The expanded size of the tensor (4) must match the existing size (2)".  Pyro's design
has four more hazards, for one ELBO object compiled on several keys (one per shape, as hybridpgm's first fix did):

- the ELBO builds its ``CompiledFunction`` once, on its first call, around the model and guide of *that* call,
  and runs those programs afterwards whatever programs it is given (an ELBO used before by a plain
  ``pyro.infer.SVI``: a keyword meant for hybridpgm's wrappers of the programs reached the user's own);
- a ``CompiledFunction`` keeps *one* list of parameter names for all its keys, rebuilt (in a set's order) each
  time it compiles a new key: a function compiled for an earlier key is then fed the parameters in the newer
  order -- a model reading its parameters in another order for another batch size scored 31183.81 against the
  eager 31685.25, silently (with other hash seeds a raw "mat2 must be a matrix");
- ``JitTraceMeanField_ELBO.differentiable_loss`` looks for its compiled function under ``_loss_and_surrogate_loss``
  but stores it under ``_differentiable_loss``, so it compiles anew on every call (pyro-ppl 1.9);
- a compiled function keeps the ELBO's settings it was traced with (``num_particles``, ``vectorize_particles``,
  ``max_plate_nesting``, ...): ``elbo.num_particles = 4`` after the first batch went unseen, the loss stayed the
  one-particle loss (a VAE: 4.6313, where ``Trace_ELBO(num_particles=4)`` gives 4.4228 under the same seed).

:class:`ShapeKeyedPrograms` therefore never calls the user's ELBO object: it keeps, for each
:func:`batch_signature` of the batch (with the keyword arguments, :func:`kwargs_signature`, and the ELBO's
settings as they are at that step, :func:`elbo_signature`), a private shallow copy of it (``copy.copy``, with
Pyro's cached compiled functions dropped and its own ``jit_options``), built on the first batch of that signature
(a setting changed between steps is a new signature: compiled anew with it).  Each copy compiles once, around the
programs it is given, with the parameter order of that shape; the user's programs get exactly the arguments they
are given; the user's ELBO is left untouched (a plain ``SVI`` may share it).  In :func:`hybridpgm.fit` that is at
most a few compilations a run: the full batch, the shorter last batch and their micro-batches under
``accumulate``.  At most :data:`MAX_SHAPES` copies are kept, the least recently used dropped first (a shape seen
again after that is compiled again); data whose shape changes with every batch (a collate padding each batch to
its own length) compile on every step, which a :class:`~hybridpgm.errors.TrainingWarning` says once: pad to a few
fixed lengths, or train with the eager ELBO.

Gradients: Pyro's ``JitTrace_ELBO.differentiable_loss`` returns ``loss + (surrogate - surrogate.detach())`` with a
traced ``loss`` that carries a gradient (the eager ``Trace_ELBO`` takes it through ``item()``), so its gradient
is :math:`\\nabla(\\text{loss}) + \\nabla(\\text{surrogate})`: twice the eager gradient of a reparameterized site,
and a different, wrong one for score-function sites (a VAE's ``decoder.2.bias``: ``[5.4003, -1.5071, ...]``
against ``Trace_ELBO``'s ``[2.7001, -0.7535, ...]``).  Pyro's ``loss_and_grads`` (plain ``SVI``) back-propagates
the surrogate alone and is right.  :meth:`ShapeKeyedPrograms.differentiable_loss` returns, for ``JitTrace_ELBO``
and its subclasses that keep Pyro's ``differentiable_loss``, ``loss.detach() + (surrogate - surrogate.detach())``:
the value of the loss, the gradient of the surrogate, as ``Trace_ELBO``.  ``JitTraceEnum_ELBO`` (Dice) and
``JitTraceMeanField_ELBO`` (whose loss is its surrogate) already give the eager twin's gradients;
``JitTraceGraph_ELBO`` has no ``differentiable_loss``.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from typing import Any, Callable

import torch
from pyro.infer import ELBO, JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO
from pyro.util import warn_if_nan

from hybridpgm.errors import TrainingWarning
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["MAX_SHAPES", "ShapeKeyedPrograms", "batch_signature", "compiles_on_first_shape", "elbo_signature",
           "kwargs_signature"]

#: Pyro's ELBOs whose ``differentiable_loss`` runs a :func:`pyro.ops.jit.trace` compiled function
_PYRO_JIT_ELBOS = (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceMeanField_ELBO)

#: the attributes under which Pyro's JIT ELBOs cache their compiled functions (trace_elbo.py, traceenum_elbo.py,
#: trace_mean_field_elbo.py, tracegraph_elbo.py): dropped from each private copy, so that it compiles its own
_COMPILED_ATTRIBUTES = ("_loss_and_surrogate_loss", "_differentiable_loss", "_jit_loss_and_surrogate_loss")

#: how many shapes (private copies of the ELBO, each with its compiled function) one pair of programs keeps
MAX_SHAPES = 8


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


def _hashable(value: Any) -> Any:
    """``value`` as Pyro keys a keyword argument: itself when hashable (a tensor by identity), a list or tuple
    item by item, a dict by its sorted items, a set as a frozenset; anything else by its ``id``."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((k, _hashable(v)) for k, v in value.items()), key=lambda item: repr(item[0])))
    if isinstance(value, (set, frozenset)):
        return frozenset(_hashable(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return "id", id(value)
    return value


def kwargs_signature(kwargs: dict) -> tuple:
    """A hashable key of the programs' keyword arguments, by name: Pyro compiles once per such key, and a
    copy of the ELBO is kept per key so that none of its compiled functions shares a parameter list with another.

    :param kwargs: the keyword arguments of the model and guide."""
    return tuple((name, _hashable(kwargs[name])) for name in sorted(kwargs))


def elbo_signature(elbo: ELBO) -> tuple:
    """A hashable key of ``elbo``'s settings (its attributes but Pyro's cached compiled functions, by name, as
    :func:`kwargs_signature` keys keyword arguments): a compiled function keeps the settings it was traced with
    (``num_particles``, ``vectorize_particles``, ``max_plate_nesting``, ``jit_options``, ...), so a copy of the
    ELBO is kept per key and a setting changed after a batch compiles anew.

    :param elbo: the user's Pyro JIT ELBO."""
    return kwargs_signature({k: v for k, v in vars(elbo).items() if k not in _COMPILED_ATTRIBUTES})


def _private_copy(elbo: ELBO) -> ELBO:
    """A shallow copy of ``elbo`` without Pyro's cached compiled functions, with a copy of its ``jit_options``
    (Pyro's ``CompiledFunction`` writes into that dict)."""
    clone = copy.copy(elbo)
    for name in _COMPILED_ATTRIBUTES:
        vars(clone).pop(name, None)
    if isinstance(getattr(clone, "jit_options", None), dict):
        clone.jit_options = dict(clone.jit_options)
    return clone


def _keeps_pyros_differentiable_loss(elbo: ELBO) -> bool:
    """Whether ``elbo`` is a ``JitTrace_ELBO`` whose ``differentiable_loss`` is Pyro's (the one with the traced,
    differentiable ``loss``), not a subclass's own."""
    return isinstance(elbo, JitTrace_ELBO) and type(elbo).differentiable_loss is JitTrace_ELBO.differentiable_loss


class ShapeKeyedPrograms:
    """A model and guide under a Pyro JIT ELBO, compiled once per shape of the batch (see the module's docstring).

    Made once per pair of programs and kept (by :class:`~hybridpgm.infer.SVIObjective`): it holds one private
    copy of the ELBO per signature of the batch, at most :data:`MAX_SHAPES` of them.

    :param model: the user's Pyro model.
    :param guide: its guide.
    :param elbo: the user's Pyro JIT ELBO (:func:`compiles_on_first_shape`); never called itself."""

    def __init__(self, model: Callable, guide: Callable, elbo: ELBO) -> None:
        self.model, self.guide, self.elbo = model, guide, elbo
        #: signature of (args, kwargs) -> the private copy of the ELBO compiled for it, least recently used first
        self.copies: OrderedDict[Any, ELBO] = OrderedDict()
        #: how many private copies were made (each compiles once): the compilations of this pair
        self.compilations = 0
        self._warned = False

    def of(self, model: Callable, guide: Callable, elbo: ELBO) -> bool:
        """Whether these are for ``model``, ``guide`` and ``elbo`` (an objective whose programs or ELBO were
        replaced makes new ones)."""
        return self.model is model and self.guide is guide and self.elbo is elbo

    def _copy_for(self, args: tuple, kwargs: dict, extra: Any = None) -> ELBO:
        """The private copy of the ELBO for this batch's signature, the ELBO's present settings and ``extra`` (a
        hashable value the traced programs depend on), made (and the least recently used dropped beyond
        :data:`MAX_SHAPES`) on the first batch of that signature."""
        key = (batch_signature(args), kwargs_signature(kwargs), elbo_signature(self.elbo), extra)
        clone = self.copies.get(key)
        if clone is not None:
            self.copies.move_to_end(key)
            return clone
        clone = self.copies[key] = _private_copy(self.elbo)
        self.compilations += 1
        if len(self.copies) > MAX_SHAPES:
            self.copies.popitem(last=False)
            if not self._warned:
                self._warned = True
                warnings.warn(f"{type(self.elbo).__name__} has been given batches of more than {MAX_SHAPES} shapes: "
                              "Pyro's JIT compiles once per shape (hybridpgm keeps the last "
                              f"{MAX_SHAPES} compiled; a changed setting of the ELBO counts as a new shape), so "
                              "data whose shape changes with every batch (padded to each batch's own length) "
                              "compile on every step; pad the batches to a few fixed "
                              "shapes, or train with the eager ELBO (Trace_ELBO, TraceEnum_ELBO)",
                              TrainingWarning, stacklevel=users_stacklevel())
        return clone

    def differentiable_loss(self, args: tuple, kwargs: dict, key: Any = None) -> torch.Tensor:
        """The ELBO's ``differentiable_loss(model, guide, *args, **kwargs)`` through the private copy compiled for
        this batch's signature; for Pyro's ``JitTrace_ELBO``, ``loss.detach() + (surrogate - surrogate.detach())``
        (the loss's value with the surrogate's gradient, as the eager ``Trace_ELBO``; Pyro's own doubles the
        gradient of reparameterized sites).

        :param args: the programs' positional arguments (the batch).
        :param kwargs: their keyword arguments (plain values: Pyro keys its compiled functions on them too).
        :param key: a hashable value the compiled function depends on besides the batch's shapes (the share of the
            update :class:`~hybridpgm.infer.global_share.GlobalShare` gives the global sites: a traced scale is a
            constant), ``None`` for none."""
        clone = self._copy_for(args, kwargs, key)
        if _keeps_pyros_differentiable_loss(clone):
            loss, surrogate = clone.loss_and_surrogate_loss(self.model, self.guide, *args, **kwargs)
            value = warn_if_nan(loss.detach(), "loss")  # as Pyro's differentiable_loss does
            return value + (surrogate - surrogate.detach())
        loss = clone.differentiable_loss(self.model, self.guide, *args, **kwargs)
        if isinstance(clone, JitTraceMeanField_ELBO) and vars(clone).get("_loss_and_surrogate_loss") is None:
            # Pyro looks for the compiled function under this name, but stores it as _differentiable_loss:
            # without this, every call compiles again
            clone._loss_and_surrogate_loss = vars(clone).get("_differentiable_loss")
        return loss
