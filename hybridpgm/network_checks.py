"""Checks of the networks a user hands to the library: a module, returning one tensor, with its sizes known.

Every model that takes a user's network (a neural CPD, a GAN's generator and discriminator, a deep kernel's
feature extractor, a Bayesian regressor's network) runs it, trains its parameters and saves them.  Three
mistakes otherwise surface as torch's raw errors far from their cause:

* a plain function or :func:`functools.partial` where an :class:`~torch.nn.Module` is expected
  (``'function' object has no attribute 'parameters'``): :func:`check_network`;
* a network returning a tuple or dict (``'tuple' object has no attribute 'shape'``): :func:`check_output`;
* a lazy module (:class:`~torch.nn.LazyLinear`) whose sizes were never set, because nothing ran it before
  training (``Attempted to use an uninitialized parameter``): :func:`refuse_uninitialized`.  Models that run the
  network at construction (:class:`~hybridpgm.infer.adversarial.GAN`, :class:`~hybridpgm.gp.DeepKernelGP`, a
  neural CPD without context inputs) initialise it there; :func:`hybridpgm.fit` refuses the others before its
  first step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin

from hybridpgm.errors import ModelSpecError

__all__ = ["check_network", "check_output", "refuse_uninitialized", "uninitialized"]


def check_network(net: Any, what: str, error: type[Exception] = ModelSpecError) -> nn.Module:
    """``net``, unless it is not a :class:`torch.nn.Module`.

    :param str what: the network as the message names it (``"Neural net"``, ``"the generator"``).
    :raises ModelSpecError: (or ``error``) naming ``what`` and the type given, and saying how to wrap a function.
    """
    if not isinstance(net, nn.Module):
        raise error(f"{what} must be a torch.nn.Module, got {type(net).__name__}: a function's weights are "
                    "neither trained, moved nor saved with the model; write it as an nn.Module subclass (its "
                    "weights as nn.Parameter) or build it from torch.nn layers (nn.Sequential)")
    return net


def check_output(out: Any, what: str, error: type[Exception] = ModelSpecError) -> torch.Tensor:
    """``out``, the output of a network, unless it is not one tensor (a tuple, a list, a dict).

    :param str what: the network as the message names it.
    :raises ModelSpecError: (or ``error``) naming ``what`` and the type returned."""
    if not isinstance(out, torch.Tensor):
        kinds = f" of {', '.join(type(o).__name__ for o in out)}" if isinstance(out, (tuple, list)) else ""
        raise error(f"{what} must return one tensor, got a {type(out).__name__}{kinds}; return the tensor alone "
                    "(wrap the network in a module whose forward picks it, e.g. out[0])")
    return out


def uninitialized(module: nn.Module) -> list[str]:
    """The names of the parameters and buffers of ``module`` that a lazy module has not initialised yet
    (:class:`torch.nn.parameter.UninitializedParameter`, :class:`~torch.nn.parameter.UninitializedBuffer`), with the
    class of the layer holding each: ``["0.weight (LazyLinear)"]``."""
    names = []
    for name, t in (*module.named_parameters(), *module.named_buffers()):
        if isinstance(t, UninitializedTensorMixin):
            owner = name.rpartition(".")[0]
            names.append(f"{name} ({type(module.get_submodule(owner)).__name__})")
    return names


def refuse_uninitialized(module: nn.Module, what: str, error: type[Exception] = ModelSpecError) -> None:
    """Raise unless every parameter and buffer of ``module`` is initialised (see :func:`uninitialized`).

    :param str what: ``module`` as the message names it (``"SVDeepKernelGP feature_extractor"``).
    :raises ModelSpecError: (or ``error``) naming the tensors, their layers and the two ways out: run the network
        once on a batch (a lazy module takes its sizes then), or use layers of fixed sizes."""
    names = uninitialized(module)
    if names:
        listed = ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
        raise error(f"{what} holds parameters of a lazy module that were never initialised ({listed}): nothing "
                    "has run the network on data yet, so their sizes are unknown and they can be neither trained "
                    "nor copied.  Run the network once on a batch of its inputs first (net(x[:2]) under "
                    "torch.no_grad()), or use layers of fixed sizes (nn.Linear(in, out) for nn.LazyLinear(out))")
