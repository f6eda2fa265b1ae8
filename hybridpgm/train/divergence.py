"""What :func:`hybridpgm.fit` says when a step cannot be taken: a non-finite loss or gradient, or another
rank's data that failed a check.

The error path may read the device freely (the steps that do not diverge pay nothing for it).  A non-finite loss
ends its :class:`~hybridpgm.errors.TrainingDivergedError` with what the objective's optional
``explain_nonfinite(player, batch)`` hook says of the step's micro-batches (:func:`explain_nonfinite`); on several
ranks, a rank whose own data passed or whose own loss was finite names the rank at fault
(:func:`failed_elsewhere`, :func:`diverged_error`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from hybridpgm.errors import DataError, TrainingDivergedError
from hybridpgm.train.batches import batch_size_of
from hybridpgm.train.distributed import DistributedContext

__all__ = ["diverged_error", "explain_nonfinite", "failed_elsewhere"]


def diverged_error(player: Any, value: float, step: int, checkpoint: Any, objective: Any = None,
                   micro_batches: list[tuple[Any, float]] = (), context: DistributedContext | None = None,
                   diverged: list[int] = (), gradient_ranks: list[int] = ()) -> TrainingDivergedError:
    """The error of ``player`` (a :class:`~hybridpgm.train.player_step.Player`) for a non-finite loss or gradient
    at ``step`` (the error path may sync freely).

    For a non-finite loss, the message ends with what the objective's optional ``explain_nonfinite`` says
    of the step's micro-batches (:func:`explain_nonfinite`): the only place it is called, so it costs the
    steps that do not diverge nothing.  On several ranks, ``diverged`` lists the ranks whose own loss was
    not finite; a rank not among them says so and points to the first one's error (its own micro-batches
    are not explained: they are not at fault).  Likewise ``gradient_ranks`` lists the ranks whose own
    gradient (before the average over ranks) held a NaN or infinity, an exact test made on this error path only
    (:meth:`~hybridpgm.train.player_step.Player._gradient_ranks`); where it is empty on several ranks, every
    rank's own gradient was finite and their average overflowed.
    """
    if checkpoint and os.path.exists(checkpoint):
        where = f" and {str(checkpoint)!r} keeps the last good state"
    elif checkpoint:  # a failure before the first write: the module holds the updates made so far, not a start
        where = (f"; no checkpoint {str(checkpoint)!r} has been written yet, and the module keeps the updates of the "
                 f"steps before")
    else:
        where = ""
    advice = "; pass skip_nonfinite=True to fit to skip such steps instead"
    explained = ""
    if not math.isfinite(value) and diverged and context is not None and context.rank not in diverged:
        what = (f"loss of player {player.name!r} is {value} (the average over {context.world_size} ranks): "
                f"the loss of rank(s) {diverged} is not finite, this rank's ({context.rank}) is; "
                f"see rank {diverged[0]}'s error for its micro-batches")
    elif not math.isfinite(value):
        what = f"loss of player {player.name!r} is {value}"
        if diverged and context is not None:
            what += f" (on rank {context.rank} of {context.world_size}, whose own loss is not finite)"
        explained = explain_nonfinite(objective, player.name, micro_batches, context)
    else:
        names = player.names or [f"#{i}" for i in range(len(player.params))]
        bad = [n for n, p in zip(names, player.params)
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        what = f"gradient of player {player.name!r} is not finite in {bad} (the loss, {value:.6g}, is finite)"
        if context is not None and context.world_size > 1:
            what += _gradient_ranks(context, gradient_ranks)
    # the players before this one in the step's schedule (a GAN's discriminator before its generator) are updated
    return TrainingDivergedError(f"{what} at step {step}; no update was applied to player {player.name!r} (a player "
                                 f"before it in this step's schedule keeps its own){where}{advice}{explained}",
                                 step=step, player=player.name)


def _gradient_ranks(context: DistributedContext, ranks: list[int]) -> str:
    """Which ranks' own gradients were not finite, as the tail of the message of a non-finite gradient."""
    if not ranks:
        return f" (each rank's own gradient is finite: their average over {context.world_size} ranks overflowed)"
    if context.rank in ranks:
        return f" (on rank {context.rank} of {context.world_size}, whose own gradient is not finite)"
    return (f"; the gradient of rank(s) {list(ranks)} is not finite, this rank's own (rank {context.rank}) is "
            f"finite: see rank {ranks[0]}'s error")


def explain_nonfinite(objective: Any, player: str, micro_batches: list[tuple[Any, float]],
                      context: DistributedContext | None = None) -> str:
    """What ``objective.explain_nonfinite(player, micro_batch)`` (an optional member of the
    :class:`~hybridpgm.train.objective.Objective` protocol) says of each micro-batch of a step whose loss is
    not finite, as the tail of the :class:`TrainingDivergedError` (``""``: no hook, or nothing to say).

    Each text is prefixed with the micro-batch and its rows in the batch (``rows 4..7``) when the batch was
    split, and with the rank when several processes train: the hook names rows of the micro-batch it is given.
    The hook runs without gradients; an exception inside it ends the explanation with ``"could not explain"``
    and its type and message, never masking the divergence itself.
    """
    explain = getattr(objective, "explain_nonfinite", None)
    if not callable(explain):
        return ""
    texts, start, count = [], 0, len(micro_batches)
    for index, (micro, _) in enumerate(micro_batches):
        rows, failed = None, False
        try:
            rows = batch_size_of(micro)
            with torch.no_grad():
                text = explain(player, micro)
            text = None if text is None else str(text)
        except Exception as error:  # noqa: BLE001 - the divergence is the error to raise; the hook only explains
            text, failed = f"could not explain the non-finite loss ({_describe(error)})", True
        if text:
            span = "" if rows is None else f" (rows {start}..{start + rows - 1} of the batch, numbered from 0 in it)"
            texts.append(f"micro-batch {index + 1} of {count}{span}: {text}" if count > 1 else text)
        if failed:  # once is enough: the other micro-batches would most likely fail alike
            break
        start += rows
    if not texts:
        return ""
    rank = f" (on rank {context.rank} of {context.world_size})" if context and context.world_size > 1 else ""
    return f".  {type(objective).__name__}.explain_nonfinite{rank}: " + "; ".join(texts)


def failed_elsewhere(failed: list[int], context: DistributedContext, player: str, step: int) -> DataError:
    """The error of a rank whose data passed the models' deferred checks when the data of the ranks
    ``failed`` did not: the failing check and row are in those ranks' own errors."""
    return DataError(f"the data of rank(s) {failed} failed a check of the model at step {step} (player {player!r}); "
                     f"see rank {failed[0]}'s error for the check and the row: this rank's ({context.rank} of "
                     f"{context.world_size}) data passed; no update was applied")


def _describe(error: Exception) -> str:
    """``"Type: message"`` of an exception, or its type alone where its message cannot be formed."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # noqa: BLE001 - a broken __str__ must not mask the divergence either
        return type(error).__name__
