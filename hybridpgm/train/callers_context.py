"""What :func:`~hybridpgm.fit` refuses in the context it is called in: autograd switched off, an open
:func:`torch.autocast` region, and Pyro effect handlers.

``fit`` sets up each step's context itself -- grad mode, autocast from its ``precision`` argument, and Pyro's
handlers for the objective's own program -- and the caller's context would otherwise reach every step:

* **autograd off** (:func:`torch.no_grad`, ``torch.set_grad_enabled(False)``, :func:`torch.inference_mode`):
  the objectives failed each in its own way: an ``SVIObjective`` with ``TraceEnum_ELBO`` (a Bayes net) with Pyro's
  raw ``ValueError: ELBO is cannot be differentiated``, a VAE, CRF or GP with a :class:`ConfigError` about a loss
  without a gradient, and an RBM's contrastive divergence, whose loss writes its own gradients, trained;
* **autocast**: torch keeps the low-precision copy of each weight it casts until the outermost autocast region
  closes, so inside the caller's ``torch.autocast("cpu", torch.bfloat16)`` every step computed with the weights
  of the first: a VAE on digits had a loss of 45.38 at the first of 40 Adam steps and 45.71 at the last (27.70
  in float32) and a test ELBO of -3015 (-27.9); a weight ``w`` of the loss ``(w - 2)^2`` went from 0 to 12 in 30
  SGD steps (lr 0.1) while the history said 4.0 at every step; with ``lr=1e30`` a VAE finished with weights of
  1.5e30 where the run raises :class:`~hybridpgm.errors.TrainingDivergedError`.  A region opened with
  ``enabled=False`` casts nothing itself but keeps the nesting open, so ``fit(precision="bf16")`` inside it did
  the same with its own casts;
* **Pyro handlers**: Pyro's handler stack is one per process, and every handler on it acts on each step's
  model and guide: ``poutine.scale(0.5)`` halved the recorded losses and the gradients, ``poutine.trace()``
  failed at the second site named ``data`` (Pyro's raw "Multiple sample sites named 'data'"),
  ``poutine.condition`` with Pyro's "site z must be sampled in trace".

:func:`check_callers_context` refuses each with a :class:`~hybridpgm.errors.ConfigError` naming the setting,
before ``fit`` looks at its other arguments.  Settings that are not handlers (``pyro.validation_enabled``,
``pyro.settings``, a param store's ``scope()``) are left alone.  The checks read a few thread-local flags and
Pyro's stack once per call: nothing per step.
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.poutine import runtime

from hybridpgm.errors import ConfigError
from hybridpgm.interrupt_scope import runtime_state

__all__ = ["autocast_error", "check_callers_context", "grad_mode_error", "handlers_error"]

#: the device types whose autocast flag is read: those fit runs on (:func:`~hybridpgm.train.device.resolve_device`);
#: a region of another type casts nothing there, and is seen through autocast's nesting level only
_DEVICE_TYPES = ("cpu", "cuda")

#: the precisions for which fit opens autocast regions of its own
_SIXTEEN_BIT = ("bf16", "fp16")


def grad_mode_error() -> ConfigError | None:
    """The error for a ``fit`` called with autograd off (naming :func:`torch.inference_mode` or
    :func:`torch.no_grad`), or ``None`` when grad mode is on."""
    if torch.is_inference_mode_enabled():
        setting = "torch.inference_mode()"
    elif not torch.is_grad_enabled():
        setting = "torch.no_grad() (or torch.set_grad_enabled(False))"
    else:
        return None
    return ConfigError(f"fit is called under {setting}: every loss would be computed without a gradient, and "
                       "training needs them; call fit outside it (evaluate under it after fit returns)")


def autocast_error(precision: Any) -> ConfigError | None:
    """The error for a ``fit`` called inside a :func:`torch.autocast` region -- one that is enabled on some
    device type, or (for ``precision`` ``"bf16"``/``"fp16"``) any open region, ``enabled=False`` too -- or
    ``None``.

    :param precision: ``fit``'s ``precision`` argument (not checked here)."""
    enabled = [f"{kind}, {torch.get_autocast_dtype(kind)}" for kind in _DEVICE_TYPES
               if torch.is_autocast_enabled(kind)]
    cache = ("autocast keeps the low-precision copy of each weight it casts until the outermost region closes, "
             "so every step would compute with the weights of the first step")
    if enabled:
        return ConfigError(f"fit is called inside torch.autocast ({'; '.join(enabled)}): {cache}; for mixed "
                           "precision call fit outside the region with precision='bf16' or 'fp16' (fit opens "
                           "autocast for each step itself)")
    if precision in _SIXTEEN_BIT and runtime_state().autocast_level > 0:
        return ConfigError(f"fit(precision={precision!r}) is called inside a torch.autocast region (enabled=False), "
                           f"which keeps fit's own autocast regions nested: {cache}; call fit outside the region")
    return None


def _handler_name(messenger: Any) -> str:
    """A handler as the message names it: its class, and a plate's name."""
    name = type(messenger).__name__
    plate = getattr(messenger, "name", None)
    return f"{name} {plate!r}" if isinstance(plate, str) else name


def handlers_error() -> ConfigError | None:
    """The error for a ``fit`` called inside Pyro effect handlers (``pyro.poutine.scale``, ``trace``,
    ``condition``, ``mask``, ``block``, a ``pyro.plate`` ...), naming them outermost first, or ``None`` when
    Pyro's handler stack is empty."""
    stack = list(runtime._PYRO_STACK)
    if not stack:
        return None
    names = ", ".join(_handler_name(m) for m in stack)
    return ConfigError(f"fit is called inside Pyro effect handlers ({names}; outermost first): they would act on "
                       "every step's model and guide (a poutine.scale scales the losses and gradients, a trace "
                       "records every step's sites, a condition fixes the guide's sites); call fit outside them, "
                       "and put a scale, mask or condition inside the model. Pyro's handler stack is one per "
                       "process: a handler another thread holds open counts too")


def check_callers_context(precision: Any) -> None:
    """Refuse a ``fit`` called with autograd off, inside :func:`torch.autocast`, or inside Pyro handlers
    (:func:`grad_mode_error`, :func:`autocast_error`, :func:`handlers_error`).

    :param precision: ``fit``'s ``precision`` argument.
    :raises ConfigError: the first of these found, naming the setting."""
    for error in (grad_mode_error(), autocast_error(precision), handlers_error()):
        if error is not None:
            raise error
