r"""fp16's gradient scaler in a player's step: the overflow read with the loss, the skipped steps counted.

Under ``fit(precision="fp16")`` each player's loss is multiplied by the scale :math:`s` of a
:class:`torch.amp.GradScaler` (:math:`2^{16}` at first) before it is back-propagated, so that small gradients do
not underflow float16; a gradient that overflows instead (an infinity or NaN in the scaled gradients) makes the
scaler skip the optimizer's step and halve :math:`s`.  :class:`~hybridpgm.train.player_step.Player` runs this
without a device-host synchronisation of its own:

* :func:`unscaled_overflow` unscales the gradients (:meth:`~torch.amp.GradScaler.unscale_`, which finds the
  overflow on the device) *before* the step's one read, and hands back the scaler's overflow flag to be read
  with the loss;
* :func:`scaled_step`, given that flag on the host, steps the optimizer or skips the step, updates the scaler,
  counts a skipped step in the player's :attr:`~hybridpgm.train.player_step.Player.skipped` (reported as
  ``FitResult.skipped_steps``), and warns once when :data:`SKIPS_BEFORE_WARNING` steps in a row were skipped.

A few skipped steps at the start of a run are the scaler's normal warm-up: it lowers :math:`s` from
:math:`2^{16}` until the gradients fit (one to a few steps on a VAE of 784 pixels).  :data:`SKIPS_BEFORE_WARNING`
skips in a row mean that the gradients overflow even at :math:`s = 2^{16-8} = 256`: float16's range (largest
value 65504) does not hold them, and without the warning a run could end with its parameters where it began.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import TrainingWarning
from hybridpgm.warning_origin import users_stacklevel

if TYPE_CHECKING:
    from hybridpgm.train.player_step import Player

__all__ = ["SKIPS_BEFORE_WARNING", "scaled_step", "unscaled_overflow"]

#: steps in a row the gradient scaler may skip before :func:`scaled_step` warns (the scale has then fallen by
#: :math:`2^8`, from :math:`2^{16}` to 256 at the start of a run); the warm-up skips fewer
SKIPS_BEFORE_WARNING = 8


def unscaled_overflow(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer,
                      device: torch.device) -> torch.Tensor:
    """Unscale ``optimizer``'s gradients in place (divide them by the scale) and return the scaler's count of
    the devices on which they overflowed, a 1-element float32 tensor on ``device`` (``0``: no NaN/inf), with no
    host synchronisation: read it with the step's loss, and call :func:`scaled_step` with it.

    :param scaler: the player's gradient scaler, whose :meth:`~torch.amp.GradScaler.unscale_` has not been
        called since its last ``update``.
    :param optimizer: the player's optimizer.
    :param device: the device the step runs on.
    """
    scaler.unscale_(optimizer)
    # the flags unscale_ wrote on the device (what GradScaler.step reads with .item(), one sync per device)
    found = [flag.to(device) for flag in scaler._found_inf_per_device(optimizer).values()]
    if not found:  # no gradient at all: nothing overflowed (the scaler's update then refuses, as it always did)
        return torch.zeros(1, dtype=torch.float32, device=device)
    return torch.stack(found).sum().reshape(1)


def scaled_step(player: Player, overflowed: bool, step: int, warn: bool = True) -> bool:
    """Step ``player``'s optimizer, unless its gradients ``overflowed``, then update its scaler (it halves its
    scale after an overflow, and doubles it after ``growth_interval`` steps without one).  A skipped step is
    counted in ``player.skipped``; the :data:`SKIPS_BEFORE_WARNING`-th skip in a row warns, once per run.

    The optimizer is stepped directly: its gradients are already unscaled (:func:`unscaled_overflow`) and the
    overflow is known on the host, so :meth:`torch.amp.GradScaler.step`'s own read of it is not needed.

    :param player: the :class:`~hybridpgm.train.player_step.Player`, with a gradient scaler.
    :param overflowed: the flag of :func:`unscaled_overflow`, read on the host (nonzero: overflow).
    :param step: the step's number (counted from 0, as in the errors of the step; for the warning).
    :param warn: issue the warning (``fit`` warns on rank 0 only; every rank skips the same steps).
    :returns: whether the optimizer stepped (the scheduler follows the steps taken).
    :warns TrainingWarning: the :data:`SKIPS_BEFORE_WARNING`-th step in a row skipped, naming the player, the
        steps and the scale reached, and what to do instead: ``precision="bf16"`` or full precision.
    """
    if overflowed:
        player.skipped += 1
        player.overflows_in_a_row += 1
    else:
        player.optimizer.step()
        player.overflows_in_a_row = 0
    player.scaler.update()
    if overflowed and warn and player.overflows_in_a_row == SKIPS_BEFORE_WARNING and not player.warned_overflow:
        player.warned_overflow = True
        warnings.warn(
            f"precision='fp16': the gradient scaler skipped {SKIPS_BEFORE_WARNING} steps of player {player.name!r} "
            f"in a row (up to step {step}): its scaled gradients overflowed float16 at each, so its parameters "
            f"have not moved in those steps, and the scale is down to {player.scaler.get_scale():g}. The gradients "
            f"exceed float16's range: train with precision='bf16' (float32's range) or precision=None (float32). "
            f"FitResult.skipped_steps counts the skipped steps.",
            TrainingWarning, stacklevel=users_stacklevel())
    return not overflowed
