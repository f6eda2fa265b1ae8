"""What a run of :func:`~hybridpgm.train.trainer.fit` saves: its state, gathered from every rank, written by rank 0.

The checkpoint holds the module's ``state_dict``, each player's optimizer and scheduler state, the objective's
and the callbacks' states (and the dataset's, every rank's, for one with ``state_dict`` of plain data,
:mod:`hybridpgm.train.dataset_states`), the history, every rank's RNG states (and, on several ranks, each rank's
own buffers and objective state, :mod:`hybridpgm.train.rank_states`), the step, the seed and the run configuration, and
whether a callback stopped the run or its ``on_fit_end`` has yet to run.  The history is saved as one tensor per
series (:func:`~hybridpgm.train.checkpoint_history.packed_history`), so that a write's Python work does not grow
with the number of steps run (only the copy of the series does, in C).  The file itself is written by
:func:`~hybridpgm.train.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.train.callback_states import callback_buffer_paths, callback_states
from hybridpgm.train.checkpoint import buffer_paths, parameter_paths, rng_state, save_checkpoint
from hybridpgm.train.checkpoint_history import packed_history
from hybridpgm.train.dataset_states import dataset_entry, dataset_state
from hybridpgm.train.history import History
from hybridpgm.train.objective import Objective
from hybridpgm.train.finite_checks import check_finite_parameters
from hybridpgm.train.player_step import Player
from hybridpgm.train.rank_states import rank_buffer_paths, rank_state

__all__ = ["RunCheckpoint"]


class RunCheckpoint:
    """Writes the checkpoint of one run at ``path`` (or only checks the parameters, when ``path`` is ``None``).

    Every rank calls :meth:`write` at the same step: the ranks' RNG states (and their own buffers) come to
    rank 0 in one collective, rank 0 writes, and its failure, broadcast, makes every rank fail alike.

    :param path: the checkpoint path (absolute: :func:`~hybridpgm.train.run_start.checkpoint_path`, so every write
        goes to the same file whatever the working folder is then), or ``None`` for a run that saves nothing.
    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext`.
    :param history: the run's :class:`~hybridpgm.train.history.History`, saved as it stands at each write.
    :param config: the run configuration (:func:`~hybridpgm.train.resume.run_config`).
    :param layout: ``(step, epoch)`` where the run's layout of the epochs began
        (:func:`~hybridpgm.train.resume.epoch_layout`), saved as ``"epoch_layout"``.
    :param dataset: the dataset whose state is saved (:func:`~hybridpgm.train.dataset_states.carried_dataset`):
        every rank's ``state_dict()``, as ``"dataset"`` (:func:`~hybridpgm.train.dataset_states.dataset_entry`);
        ``None``: none is.
    """

    def __init__(self, path: str | os.PathLike | None, *, module: torch.nn.Module, objective: Objective,
                 players: dict[str, Player], callbacks: Sequence[Any], history: History, seed: int,
                 config: dict[str, Any], context, layout: tuple[int, int] = (0, 0), dataset: Any = None) -> None:
        self.path, self.module, self.objective, self.players = path, module, objective, players
        self.layout, self.dataset = layout, dataset
        self.callbacks, self.history, self.seed, self.config, self.context = callbacks, history, seed, config, context

    def write(self, step: int, stopped: bool = False, pending: bool = False) -> None:
        """Save the run as it stands after ``step`` steps.

        :param stopped: a callback stopped the run (a resume runs no step).
        :param pending: the callbacks' ``on_fit_end`` has yet to run (a resume runs it).
        :raises TrainingDivergedError: a parameter is NaN/inf (nothing is written).
        :raises CheckpointError: rank 0 could not write the file (on every rank).
        """
        module, players, objective, context, checkpoint = (self.module, self.players, self.objective, self.context,
                                                           self.path)
        check_finite_parameters(module, players, step, checkpoint)
        # every rank's RNG states, its dataset's state and, on several ranks, its own buffers and objective state,
        # in one collective
        gathered = context.gather_to_main((rng_state(), rank_state(module, objective) if context.world_size > 1
                                           else None, dataset_state(self.dataset)))
        failure = None
        if checkpoint is not None and context.is_main:
            try:
                callback_state = callback_states(self.callbacks)
                buffers = buffer_paths(module)
                per_rank = {} if context.world_size == 1 else {"rank_states": [g[1] for g in gathered]}
                save_checkpoint(checkpoint, {
                    "module": module.state_dict(),
                    "players": {name: player.state_dict() for name, player in players.items()},
                    "objective": objective.state_dict() if hasattr(objective, "state_dict") else None,
                    "history": packed_history(self.history, checkpoint),  # one tensor per series
                    "rng": [g[0] for g in gathered],
                    "step": step,
                    "seed": self.seed,
                    "world_size": context.world_size,
                    "config": self.config,
                    "epoch_layout": list(self.layout),
                    "callbacks": callback_state,
                    "stopped_early": stopped,
                    "fit_end_pending": pending,  # on_fit_end has yet to run
                    **dataset_entry(self.dataset, [g[2] for g in gathered]),
                    **per_rank,
                }, infinite_ok=buffers | callback_buffer_paths(callback_state, buffers)
                   | rank_buffer_paths(module, len(per_rank.get("rank_states", ()))),
                   checked=parameter_paths(module))  # check_finite_parameters has just checked them
            except CheckpointError as error:
                if context.world_size == 1:
                    raise
                failure = str(error)
        failure = context.broadcast_object(failure)  # also the barrier: every rank fails with rank 0's write
        if failure is not None:
            raise CheckpointError(failure if context.is_main else f"rank 0 could not write the checkpoint: {failure}")
