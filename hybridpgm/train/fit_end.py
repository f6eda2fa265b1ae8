"""How a run of :func:`~hybridpgm.train.trainer.fit` ends: the end-of-run checkpoint, ``on_fit_end``, the result.

Once the steps are over (all run, a callback's stop, or a stop signal), ``fit`` ends in this order:

1. :func:`write_end_of_run`, still under the run's signal handlers: the end-of-run checkpoint is written
   before the callbacks' ``on_fit_end`` runs and again after it, so a failing ``on_fit_end`` loses no step
   (the first write is marked so that a resume runs ``on_fit_end`` again); a run resumed after its
   ``on_fit_end`` failed, with no step left, runs it now;
2. :func:`fit_outcome`, after them: the stop signal that ended the run raised as a
   :class:`~hybridpgm.errors.TrainingInterrupted` (:func:`~hybridpgm.train.interruption.interruption`), or
   one that arrived after the last step raised again to act as usual; else a
   :class:`~hybridpgm.errors.DivergenceWarning` for each player whose loss exploded
   (:func:`~hybridpgm.train.history.loss_explosions`) and the :class:`~hybridpgm.train.history.FitResult`.

However the call ends (an exception included), ``fit`` leaves every player's gradients ``None``
(:func:`_clear_gradients`).
"""

from __future__ import annotations

import signal
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

from hybridpgm.errors import DivergenceWarning
from hybridpgm.train.callbacks import StepInfo
from hybridpgm.train.history import FitResult, loss_explosions
from hybridpgm.train.interruption import interruption
from hybridpgm.train.progress import say
from hybridpgm.warning_origin import users_stacklevel

if TYPE_CHECKING:
    import torch

    from hybridpgm.train.batches import BatchStream
    from hybridpgm.train.distributed import DistributedContext
    from hybridpgm.train.history import History
    from hybridpgm.train.objective import Objective
    from hybridpgm.train.player_step import Player

__all__ = ["fit_outcome", "write_end_of_run"]


def _clear_gradients(players: Mapping[str, Player]) -> None:
    """Every player's ``.grad`` back to ``None`` (:meth:`~hybridpgm.train.player_step.Player.clear_gradients`)."""
    for player in players.values():
        player.clear_gradients()


def write_end_of_run(*, history: History, start_step: int, info: StepInfo | None, stopped: bool, interrupted: int,
                     fit_end_pending: bool, has_fit_end: bool, callbacks: list[Any], stream: BatchStream,
                     objective: Objective, device: torch.device, context: DistributedContext,
                     write_checkpoint: Callable[..., Any]) -> int:
    """Write the end-of-run checkpoint, and run the callbacks' ``on_fit_end`` between two writes of it.

    ``on_fit_end`` runs when the run was not interrupted, some callback has one (``has_fit_end``), and a step
    ran in this call (``info``, the last step's :class:`~hybridpgm.train.callbacks.StepInfo`) or the resumed
    checkpoint marked it pending (``fit_end_pending``); an interrupted run's checkpoint is marked pending too.

    :param stopped: a callback stopped the run (recorded as finished); ``interrupted``: the number of the stop
        signal that ended it, ``0`` if none.
    :param write_checkpoint: :meth:`~hybridpgm.train.run_checkpoint.RunCheckpoint.write`.
    :returns: the number of steps done over the whole run.
    """
    steps_done = history.step[-1] if history.step else start_step
    ending = not interrupted and (info is not None or (fit_end_pending and start_step > 0)) and has_fit_end
    if ending and info is None:  # resumed after its on_fit_end failed, with no step left: run it now
        info = StepInfo(step=steps_done, epoch=stream.epoch_of(steps_done - 1),
                        losses={p: v[-1] for p, v in history.loss.items() if v}, objective=objective,
                        history=history, device=device, is_main=context.is_main, reduce_mean=context.mean_of)
    # the run is on disk before any on_fit_end can fail; marked so that a resume runs on_fit_end again.
    # An interrupted run has not run it either: a resume with steps left runs it after them, one with no
    # step left (the signal came during the last step, or with a callback's stop) runs it at once
    write_checkpoint(steps_done, bool(stopped), pending=ending or (bool(interrupted) and has_fit_end))
    if ending:
        for callback in callbacks:
            if hasattr(callback, "on_fit_end"):
                callback.on_fit_end(info)
        write_checkpoint(steps_done, bool(stopped))  # with what on_fit_end added (an end-of-run evaluation)
    return steps_done


def fit_outcome(*, history: History, players: Mapping[str, Player], steps_done: int, stopped: bool,
                interrupted: int, late_signal: int, checkpoint: str | None, mode: str, context: DistributedContext,
                device: torch.device) -> FitResult:
    """``fit``'s result, or the stop signal that ended the run.

    :param interrupted: the signal that ended the run (``0``: none), raised as
        :class:`~hybridpgm.errors.TrainingInterrupted` naming ``steps_done``, the ``checkpoint`` and the
        resume ``mode``; ``late_signal``: one that arrived after the last step, raised again.
    :param stopped: a callback stopped the run early.
    :raises TrainingInterrupted: for ``interrupted``.
    """
    if interrupted:
        error = interruption(interrupted, steps_done, checkpoint, mode)
        if context.is_main:
            say(str(error))
        raise error
    if late_signal:  # arrived after the last step: the run is complete and saved; let the signal act as usual
        signal.raise_signal(late_signal)
    explosions = loss_explosions(history)
    for player, (first, last) in explosions.items():
        warnings.warn(f"the loss of player {player!r} exploded from {first:.4g} to {last:.4g}: the run diverged "
                      "(lower the learning rate)", DivergenceWarning, stacklevel=users_stacklevel())
    return FitResult(history=history, steps=steps_done, optimizers={p: pl.optimizer for p, pl in players.items()},
                     device=device, stopped_early=bool(stopped),
                     skipped_steps={p: pl.skipped for p, pl in players.items()}, loss_explosions=explosions)
