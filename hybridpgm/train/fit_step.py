"""One step of :func:`~hybridpgm.train.trainer.fit`: a batch through the players of the schedule.

The step's batch (:meth:`~hybridpgm.train.batches.BatchStream.batch`), moved to the run's device, is split
into ``accumulate`` micro-batches (:func:`~hybridpgm.train.micro_batches.split_batch`); each player of the
objective's schedule in turn updates on them (:meth:`~hybridpgm.train.player_step.Player.update`), a player
scheduled :math:`k` times recording the mean of its :math:`k` losses; then the objective's ``train_step_end``
runs, and the step's losses, wall time and throughput (examples per second) are recorded in the
:class:`~hybridpgm.train.history.History` and shown on the progress bar.  The checks, the callbacks and the
checkpoints around the step are ``fit``'s.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from hybridpgm.train.batches import batch_size_of, move_to
from hybridpgm.train.callbacks import StepInfo
from hybridpgm.train.micro_batches import split_batch
from hybridpgm.train.progress import advance

if TYPE_CHECKING:
    import torch

    from hybridpgm.train.batches import BatchStream
    from hybridpgm.train.distributed import DistributedContext
    from hybridpgm.train.history import History
    from hybridpgm.train.objective import Objective
    from hybridpgm.train.player_step import Player

__all__ = ["take_step"]


def take_step(step: int, *, objective: Objective, players: Mapping[str, Player], schedule: Sequence[str],
              stream: BatchStream, device: torch.device, context: DistributedContext, accumulate: int,
              precision: str | None, clip_grad_norm: float | None, checkpoint: str | None, batch_size: int,
              history: History, started: float, bar: Any) -> StepInfo:
    """Run step ``step`` (counted from 0) and return the :class:`~hybridpgm.train.callbacks.StepInfo` of step
    ``step + 1`` that the callbacks' ``on_step_end`` get.

    :param started: the :func:`time.perf_counter` time the run would have started at, had it run without
        interruption (a resumed run's elapsed time subtracted): the history's wall time counts from it.
    :param bar: the run's progress bar (:func:`~hybridpgm.train.progress.progress_bar`).
    """
    step_started = time.perf_counter()
    batch = move_to(stream.batch(step), device)
    micro_batches = split_batch(batch, accumulate)
    losses: dict[str, list[float]] = {}
    for name in schedule:
        value = players[name].update(objective, micro_batches, step=step, context=context,
                                     precision=precision, device=device,
                                     clip_grad_norm=clip_grad_norm, checkpoint=checkpoint,
                                     accumulate=accumulate, batch_size=batch_size)
        losses.setdefault(name, []).append(value)
    if hasattr(objective, "train_step_end"):
        objective.train_step_end(step)
    step_losses = {p: sum(v) / len(v) for p, v in losses.items()}
    now = time.perf_counter()
    history.record(step + 1, step_losses, now - started,
                   batch_size_of(batch) / max(now - step_started, 1e-12))
    advance(bar, step_losses)
    return StepInfo(step=step + 1, epoch=stream.epoch_of(step), losses=step_losses, objective=objective,
                    history=history, device=device, is_main=context.is_main, reduce_mean=context.mean_of)
