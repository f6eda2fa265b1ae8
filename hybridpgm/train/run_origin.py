"""Where a run of :func:`~hybridpgm.train.trainer.fit` begins: afresh, or from its checkpoint.

A fresh run starts at step 0 with an empty history and the epochs laid out from step 0.  A resumed one
(:func:`~hybridpgm.train.run_start.open_checkpoint` found a checkpoint to resume) takes the checkpoint's step,
history, elapsed time, seed and epoch layout (:func:`~hybridpgm.train.resume.epoch_layout`), the states of the
module, optimizers, schedulers, objective and callbacks (:func:`~hybridpgm.train.run_start.restore`), of the
dataset (:func:`~hybridpgm.train.dataset_states.load_dataset_state`) and, on as many ranks as saved it, each
rank's own buffers (:mod:`hybridpgm.train.rank_states`).  Either way every rank then starts from rank 0's
weights, as DDP does.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from hybridpgm.errors import TrainingWarning
from hybridpgm.train.callback_states import check_callback_settings
from hybridpgm.train.dataset_states import carried_dataset, load_dataset_state
from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.fit_options import draw_seed
from hybridpgm.train.history import History
from hybridpgm.train.progress import say
from hybridpgm.train.rank_states import load_rank_state
from hybridpgm.train.resume import epoch_layout
from hybridpgm.train.run_start import checkpoint_path, open_checkpoint, restore
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["RunOrigin", "begin_run"]


@dataclass(eq=False)  # compared by identity: it holds modules and tensors (tests/test_result_equality.py)
class RunOrigin:
    """Where a run begins.

    :ivar checkpoint: the checkpoint's absolute path (:func:`~hybridpgm.train.run_start.checkpoint_path`), or
        ``None``.
    :ivar resumed: the checkpoint state resumed from, or ``None`` (a fresh run).
    :ivar seed: the run's seed (rank 0's, or the checkpoint's).
    :ivar carried: the dataset whose state is saved with the checkpoint, or ``None``.
    :ivar history: the losses so far; ``start_step``, ``elapsed``: the step to run first and the seconds spent.
    :ivar finished: a callback had stopped the run (no step is run); ``fit_end_pending``: its ``on_fit_end``
        has yet to run.
    :ivar layout: ``(step, epoch)`` where the epochs' layout began.
    """

    checkpoint: str | None
    resumed: dict[str, Any] | None
    seed: int
    carried: Any
    history: History
    start_step: int = 0
    elapsed: float = 0.0
    finished: bool = False
    fit_end_pending: bool = False
    layout: tuple[int, int] = (0, 0)


def begin_run(checkpoint: str | os.PathLike | None, *, mode: str, overwrite: bool, override_hyperparameters: bool,
              seed: int | None, context: DistributedContext, device: torch.device, dataset: Any,
              module: torch.nn.Module, objective: Any, players: dict[str, Any], hyperparameters: dict[str, Any],
              schedulers: dict[str, Any], callbacks: list[Any], config: dict[str, Any]) -> RunOrigin:
    """Open ``checkpoint`` (if any), resume from it or start afresh, and give every rank rank 0's weights.

    A fresh run without a ``seed`` draws one from the caller's torch generator
    (:func:`~hybridpgm.train.fit_options.draw_seed`: reproducible under its ``torch.manual_seed``); every rank
    goes on with rank 0's seed before a resume lays out the epochs from it.  Resuming prints one line (file
    and step) on rank 0 and warns (:class:`~hybridpgm.errors.TrainingWarning`) of state the checkpoint lost.

    :param mode: ``fit``'s resume mode (:func:`~hybridpgm.train.resume.resume_mode`); the other arguments are
        ``fit``'s own, checked, and the run's players, hyperparameters, schedulers and configuration.
    :raises CheckpointError: as :func:`~hybridpgm.train.run_start.open_checkpoint` and
        :func:`~hybridpgm.train.run_start.restore` (another run's checkpoint, an unreadable file ...).
    """
    own_rank_states = None  # each rank's saved buffers and objective state, on a resume on as many ranks
    if checkpoint is not None:  # resolved once: a change of the working folder during the run moves nothing
        checkpoint = checkpoint_path(checkpoint)
    resumed = open_checkpoint(checkpoint, mode, overwrite, context, device) if checkpoint is not None else None
    if resumed is None and seed is None:
        seed = draw_seed()  # from the caller's torch generator: reproducible under its torch.manual_seed
    # every rank goes on with rank 0's seed (None: the checkpoint's) before a resume lays out the epochs from it
    seed = context.agree_on_seed(seed)
    carried = carried_dataset(dataset, checkpoint, context)  # the dataset whose state is saved (or None)
    origin = RunOrigin(checkpoint, resumed, seed, carried, History())
    if resumed is not None:
        # the callbacks' settings (an EarlyStopping's monitor ...) are compared before restore loads their states
        resumed["callbacks"] = check_callback_settings(checkpoint, callbacks, resumed.get("callbacks"),
                                                       override_hyperparameters)
        restored = restore(checkpoint, resumed, module=module, objective=objective, players=players,
                           hyperparameters=hyperparameters, schedulers=schedulers, callbacks=callbacks,
                           config=config, seed=seed, override_hyperparameters=override_hyperparameters,
                           world_size=context.world_size)
        origin.history, origin.start_step, origin.elapsed, origin.seed = (restored.history, restored.start_step,
                                                                          restored.elapsed, restored.seed)
        origin.finished, origin.fit_end_pending, own_rank_states = (restored.finished, restored.fit_end_pending,
                                                                    restored.own_rank_states)
        # the run's seed, restored
        origin.layout, relaid = epoch_layout(resumed, config, origin.start_step, seed=origin.seed)
        load_dataset_state(checkpoint, dataset, resumed.get("dataset"), context.rank, context.world_size,
                           carried=carried is not None)
        if context.is_main:
            say(f"resuming {type(objective).__name__} from {str(checkpoint)!r} at step {origin.start_step}"
                + ("; it had stopped early, so no step is run" if origin.finished else "")
                + (f"; {relaid}" if relaid and not origin.finished else ""))
            if restored.lost is not None:
                warnings.warn(restored.lost, TrainingWarning, stacklevel=users_stacklevel())
    # every rank starts from rank 0's weights, as DDP does, and from its buffers unless it restores its own
    context.broadcast_module_state(module, buffers=own_rank_states is None)
    if own_rank_states is not None:
        load_rank_state(checkpoint, module, objective, own_rank_states[context.rank])
    return origin
