"""An objective's written-out gradients: its optional ``loss_and_gradients``, taken instead of autograd's.

An objective whose gradient is known in closed form, such as contrastive divergence's (Hinton 2002)

.. math:: \\nabla_\\theta \\ell = \\langle \\partial_\\theta E \\rangle_{\\rm data}
    - \\langle \\partial_\\theta E \\rangle_{\\rm model},

may define ``loss_and_gradients(player, batch) -> (loss, {parameter: gradient})``.
:class:`~hybridpgm.train.player_step.Player` takes those gradients, weighted by the micro-batch's share
:math:`m_i / B`, where they are the whole story (:func:`takes_written_gradients`), and back-propagates the
``loss`` otherwise.

Reference: G. E. Hinton, *Training Products of Experts by Minimizing Contrastive Divergence*, Neural
Computation 14(8), 2002.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.method_owners import goes_with

__all__ = ["add_written_gradients", "takes_written_gradients"]


def _writes_its_loss_gradients(objective: Any) -> bool:
    """Whether ``objective`` has a ``loss_and_gradients`` that goes with its ``loss``: defined by the
    class that defines ``loss`` or by a subclass of it (not shadowed by a ``loss`` set on the instance)."""
    if "loss" in getattr(objective, "__dict__", ()):
        return False
    return goes_with(type(objective), "loss_and_gradients", "loss")


def takes_written_gradients(objective: Any, params: list[torch.nn.Parameter], scaler: Any) -> bool:
    """Whether to take the objective's written-out gradients (its optional ``loss_and_gradients``)
    instead of autograd's: only where they are the whole story, that is where ``loss`` is not
    overridden below ``loss_and_gradients`` (a subclass adding a penalty to ``loss``), without a
    gradient ``scaler``, and with every parameter of ``params`` requiring a gradient and carrying no hook that
    autograd would run."""
    return (_writes_its_loss_gradients(objective) and scaler is None
            and all(p.requires_grad and not p._backward_hooks and not p._post_accumulate_grad_hooks
                    for p in params))


def add_written_gradients(objective: Any, player: str, params: list[torch.nn.Parameter], names: list[str],
                          grads: Mapping[torch.Tensor, torch.Tensor], weight: float) -> None:
    """Add ``weight`` times the written-out ``grads`` (parameter -> gradient) to the ``params``' ``.grad``,
    as ``backward`` would; a parameter not in ``grads`` gets no gradient from this micro-batch.

    :param player: the player's name and ``names`` its parameters' names in the module, for the messages.
    :raises ConfigError: a gradient of another shape, dtype or device than its parameter, or gradients of
        parameters outside the player.
    """
    taken = 0
    for i, p in enumerate(params):
        g = grads.get(p)
        if g is None:
            continue
        taken += 1
        if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            name = names[i] if i < len(names) else f"#{i}"
            raise ConfigError(
                f"{type(objective).__name__}.loss_and_gradients({player!r}) gave a gradient of shape "
                f"{tuple(g.shape)}, {g.dtype} on {g.device} for parameter {name!r} of shape {tuple(p.shape)}, "
                f"{p.dtype} on {p.device}")
        g = g.detach() if weight == 1.0 else g.detach() * weight
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)
    if taken != len(grads):
        raise ConfigError(f"{type(objective).__name__}.loss_and_gradients({player!r}) gave gradients for "
                          f"{len(grads) - taken} parameter(s) outside player {player!r}")
