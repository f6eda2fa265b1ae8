"""Where a run of :func:`~hybridpgm.train.trainer.fit` starts: its players, and the state a checkpoint restores.

:func:`build_players` makes each player's optimizer (and scheduler) from the factories ``fit`` was given;
:func:`open_checkpoint` decides, from ``resume`` and ``overwrite``, whether an existing checkpoint is read;
:func:`restore` puts a read checkpoint back into the module, the players, the objective and the callbacks, after
:func:`~hybridpgm.train.resume.check_resumable` has compared the recorded run with the requested one.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from hybridpgm.errors import CheckpointError, CheckpointNotFoundError
from hybridpgm.paths import file_path
from hybridpgm.state_renames import upgrade_state
from hybridpgm.train.callback_states import callback_buffer_paths, load_callback_states
from hybridpgm.train.atomic_write import check_writable, os_reason
from hybridpgm.train.checkpoint import (buffer_paths, check_finite_checkpoint, check_replaceable, load_checkpoint,
                                        remove_stale_temporaries)
from hybridpgm.train.checkpoint_parameters import check_optimizer_sizes
from hybridpgm.train.fit_options import (check_closure_optimizer, check_optimizer, check_players,
                                         check_scheduler, per_player)
from hybridpgm.train.history import History
from hybridpgm.train.objective import Objective
from hybridpgm.train.player_step import Player
from hybridpgm.train.rank_states import rank_buffer_paths, resume_plan
from hybridpgm.train.recorded_classes import upgrade_class_names
from hybridpgm.train.resume import (check_resumable, optimizer_hyperparameters, override_scheduler,
                                    scheduler_settings)
from hybridpgm.train.resume import override_hyperparameters as override_hyperparameters_of
from hybridpgm.train.scheduler_settings import (apply_requested_schedule, check_scheduler_override,
                                                requested_schedule)

__all__ = ["Restored", "build_players", "checkpoint_path", "open_checkpoint", "restore"]


def checkpoint_path(checkpoint: str | os.PathLike) -> str:
    """``fit``'s ``checkpoint`` as the absolute path it names now (``~`` expanded,
    :func:`~hybridpgm.paths.file_path`): a relative path is resolved once, when the run starts, so a change of
    the working folder during the run (a notebook's ``%cd``, a callback) does not send later checkpoints elsewhere.

    :raises CheckpointError: ``checkpoint`` is not a str or ``os.PathLike`` (``bytes``), is empty or ends with a
        separator.
    """
    return os.path.abspath(file_path(checkpoint, "checkpoint", CheckpointError))


def build_players(objective: Objective, optim, lr_scheduler, precision: str | None, device: torch.device,
                  skip_nonfinite: bool) -> tuple[dict[str, Player], dict[str, Any], dict[str, Any]]:
    """The players, each one's optimizer hyperparameters as requested (read before a scheduler can move them),
    and each one's scheduler settings (:func:`~hybridpgm.train.resume.scheduler_settings`).

    :param optim: a factory called with a player's parameters, a dict player -> factory, or ``None`` (Adam,
        ``lr=1e-3``).
    :param lr_scheduler: a factory called with a player's optimizer, a dict player -> factory, or ``None``.
    :param precision: ``"fp16"`` gives each player a gradient scaler.
    :raises ConfigError: the checks of :func:`~hybridpgm.train.fit_options.check_players`,
        :func:`~hybridpgm.train.fit_options.check_optimizer`,
        :func:`~hybridpgm.train.fit_options.check_closure_optimizer` (an optimizer needing a closure, L-BFGS,
        with fp16) and :func:`~hybridpgm.train.fit_options.check_scheduler`, before any step.
    """
    params = check_players(objective)
    names = {id(p): n for n, p in objective.module.named_parameters()}
    factories = per_player(optim or functools.partial(torch.optim.Adam, lr=1e-3), params, "optim")
    scheduler_factories = {} if lr_scheduler is None else per_player(lr_scheduler, params, "lr_scheduler",
                                                                     optional=True)
    players, hyperparameters, schedulers = {}, {}, {}
    for name, group in params.items():
        optimizer = check_closure_optimizer(check_optimizer(factories[name](group), name), name, precision=precision)
        hyperparameters[name] = optimizer_hyperparameters(optimizer, names)  # with its parameters' names
        scheduler = check_scheduler(scheduler_factories[name](optimizer), optimizer, name) \
            if name in scheduler_factories else None
        schedulers[name] = scheduler_settings(scheduler)
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        players[name] = Player(name, group, optimizer, scheduler, scaler, names=[names[id(p)] for p in group],
                               skip_nonfinite=skip_nonfinite)
    return players, hyperparameters, schedulers


def open_checkpoint(checkpoint: str | os.PathLike, mode: str, overwrite: bool, context,
                    device: torch.device) -> dict[str, Any] | None:
    """The checkpoint state to resume from, or ``None`` to start afresh.

    Refuses a ``checkpoint`` that is a directory, a symbolic link, a device or a FIFO before any step; rank 0
    checks that the file can be written (:func:`~hybridpgm.train.atomic_write.check_writable`: a temporary file
    in its folder, removed at once; a folder that cannot be created or written is refused before any step, not
    at the first write), removes the temporaries a killed write left
    (:func:`~hybridpgm.train.atomic_write.remove_stale_temporaries`: those it may remove whose writer has ended,
    and those named without a writer) and, with ``overwrite``, the checkpoint; every rank then takes rank 0's
    view of whether it exists and of a refused folder.  A relative ``checkpoint`` is taken relative to the
    working folder now (:func:`checkpoint_path`).

    :param mode: :func:`~hybridpgm.train.resume.resume_mode`'s ``"auto"``, ``"require"`` or ``"never"``.
    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext`.
    :raises CheckpointError: the path is not a str or ``os.PathLike``, or not a regular file, its folder cannot be
        created or written (naming the OS reason, or the file found where a folder should be), ``overwrite`` could
        not remove the checkpoint (naming the OS reason: another user's file in a sticky folder), ``mode`` is
        ``"require"`` and there is no checkpoint, or ``"never"`` and there is one; or the file cannot be read
        (:func:`~hybridpgm.train.checkpoint.load_checkpoint`).
    """
    checkpoint = checkpoint_path(checkpoint)
    if os.path.isdir(checkpoint):
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} is a directory; pass the path of a file in it")
    check_replaceable(checkpoint, "checkpoint")  # a link, a device, a FIFO: refused before any step
    failure = None
    if context.is_main:
        try:
            check_writable(checkpoint, "checkpoint")  # refused now, not at the first write after the steps
        except CheckpointError as error:
            if context.world_size == 1:
                raise
            failure = str(error)
        remove_stale_temporaries(checkpoint)
        if failure is None and overwrite and os.path.exists(checkpoint):
            try:
                os.unlink(checkpoint)
            except FileNotFoundError:
                pass  # removed meanwhile: nothing to overwrite
            except OSError as error:
                refused = CheckpointError(f"overwrite=True cannot remove checkpoint {str(checkpoint)!r}: "
                                          f"{os_reason(error)}; remove it yourself or pass another checkpoint path")
                if context.world_size == 1:
                    raise refused from error
                failure = str(refused)
    # rank 0's view, after any deletion; also its failure, which every rank raises
    exists, failure = context.broadcast_object((os.path.exists(checkpoint), failure))
    if failure is not None:
        raise CheckpointError(failure if context.is_main else f"rank 0 refused the checkpoint: {failure}")
    if mode == "require" and not exists:
        raise CheckpointNotFoundError(f"resume='require' but checkpoint {str(checkpoint)!r} does not exist")
    if mode == "never" and exists:
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} exists and this run would replace it: pass "
                              "resume=True to continue it or overwrite=True (CLI: --overwrite) to start afresh")
    # a class of the script recorded by an older release in a spawn child (__mp_main__) reads as __main__
    return upgrade_class_names(load_checkpoint(checkpoint, map_location=device)) if exists else None


@dataclass
class Restored:
    """Where a resumed run continues (what :func:`restore` gives back)."""

    history: History  #: the steps run so far
    start_step: int  #: the first step to run
    elapsed: float  #: seconds the run had taken when the checkpoint was written
    seed: int  #: the run's seed (the checkpoint's, unless hyperparameters are overridden with a new one)
    finished: bool  #: a callback had stopped the run: no step is left to run
    fit_end_pending: bool  #: the callbacks' ``on_fit_end`` failed or had not run: run it again
    own_rank_states: list | None  #: each rank's saved buffers and objective state, on as many ranks
    lost: str | None  #: a warning naming the per-rank state a resume on another number of ranks loses


def upgrade_checkpoint_names(module: torch.nn.Module, resumed: dict) -> None:
    """Rename, in place, the entries of ``module`` renamed since the checkpoint ``resumed`` was written
    (:func:`~hybridpgm.state_renames.upgrade_state`) wherever the checkpoint keeps them by name: its module state,
    each rank's own buffers (``rank_states``, on several ranks) and the module states callbacks keep under
    ``"module"``."""
    resumed["module"] = upgrade_state(module, resumed["module"])
    for rank_state in resumed.get("rank_states") or []:
        if isinstance(rank_state, dict) and isinstance(rank_state.get("buffers"), dict):
            rank_state["buffers"] = upgrade_state(module, rank_state["buffers"])
    for entry in resumed.get("callbacks") or []:
        state = entry.get("state") if isinstance(entry, dict) else None
        if isinstance(state, dict) and isinstance(state.get("module"), dict):
            state["module"] = upgrade_state(module, state["module"])


def restore(checkpoint: str | os.PathLike, resumed: dict[str, Any], *, module: torch.nn.Module,
            objective: Objective, players: dict[str, Player], hyperparameters: dict[str, Any],
            schedulers: dict[str, Any], callbacks: Iterable[Any], config: dict[str, Any], seed: int | None,
            override_hyperparameters: bool, world_size: int) -> Restored:
    """Put the checkpoint state ``resumed`` back: the module, each player's optimizer and scheduler (the
    requested hyperparameters applied over them with ``override_hyperparameters``), the objective's and the
    callbacks' states.

    :param config: the requested run configuration (:func:`~hybridpgm.train.resume.run_config`).
    :param seed: the requested seed, kept only with ``override_hyperparameters`` (the run's seed, ``Restored.seed``,
        is what :func:`~hybridpgm.train.resume.epoch_layout` compares with the checkpoint's).
    :raises CheckpointError: the checkpoint holds non-finite values, other players, another model, a player
        whose optimizer holds other parameters (frozen or unfrozen since) or other hyperparameters
        (:func:`~hybridpgm.train.resume.check_resumable`,
        :func:`~hybridpgm.train.checkpoint_parameters.check_optimizer_sizes`), an override its scheduler would not
        honour (:func:`~hybridpgm.train.scheduler_settings.check_scheduler_override`: a momentum the scheduler
        cycles, a ``OneCycleLR`` ending before the checkpoint's step), or an optimizer state that torch
        refuses (its message, with the file and the player).  The checks come before anything is loaded: a
        refused resume leaves the module as it was.
    """
    upgrade_checkpoint_names(module, resumed)  # entries renamed since it was written
    module_buffers = buffer_paths(module)
    check_finite_checkpoint(checkpoint, resumed, infinite_ok=module_buffers
                            | callback_buffer_paths(resumed.get("callbacks") or [], module_buffers)
                            | rank_buffer_paths(module, len(resumed.get("rank_states") or [])))
    if sorted(resumed["players"]) != sorted(players):
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} holds players {sorted(resumed['players'])}, "
                              f"the objective has {sorted(players)}")
    check_resumable(checkpoint, resumed, module, config, seed, override_hyperparameters, type(objective).__module__)
    check_optimizer_sizes(checkpoint, resumed["players"], players)  # also for a checkpoint without the names
    recorded = resumed.get("config") or {}
    afresh = {name: override_hyperparameters and "schedulers" in recorded and  # another scheduler (or none before)
              ((recorded["schedulers"] or {}).get(name) or {}).get("class") != (schedulers[name] or {}).get("class")
              for name in players}
    if override_hyperparameters:  # what a scheduler would not honour, refused before anything is loaded
        for name, player in players.items():
            check_scheduler_override(checkpoint, name, player.scheduler, hyperparameters[name],
                                     (recorded.get("optimizers") or {}).get(name),
                                     None if afresh[name] else resumed["players"][name].get("scheduler"))
    module.load_state_dict(resumed["module"])
    for name, player in players.items():
        state = resumed["players"][name]
        was_scheduler = (recorded.get("schedulers") or {}).get(name)
        if afresh[name]:
            state = {**state, "scheduler": None}  # it starts afresh
        # a OneCycleLR's or CyclicLR's state and bounds as built, before the checkpoint replaces them
        requested_state = requested_schedule(player.scheduler) if override_hyperparameters else None
        try:
            player.load_state_dict(state)
        except ValueError as error:  # torch's check of the optimizer state's layout (a backstop: checked above)
            raise CheckpointError(f"checkpoint {str(checkpoint)!r}: cannot restore player {name!r}'s optimizer: "
                                  f"{error}") from error
        if override_hyperparameters:  # the scheduler's settings first: a new lr is floored at its min_lr
            override_scheduler(player.scheduler, schedulers[name], was_scheduler)
            override_hyperparameters_of(player.optimizer, player.scheduler, hyperparameters[name],
                                        (recorded.get("optimizers") or {}).get(name))
            apply_requested_schedule(player.scheduler, requested_state, schedulers[name], was_scheduler, afresh[name])
    if hasattr(objective, "load_state_dict") and resumed.get("objective") is not None:
        objective.load_state_dict(resumed["objective"])
    load_callback_states(checkpoint, callbacks, resumed.get("callbacks"))
    finished = bool(resumed.get("stopped_early", False))  # a callback ended it: nothing is left to run
    fit_end_pending = bool(resumed.get("fit_end_pending", False))  # its on_fit_end failed: run it again
    history = History.from_state_dict(resumed["history"])
    start_step = int(resumed["step"])
    if seed is None or not override_hyperparameters:
        seed = int(resumed["seed"])
    elapsed = history.wall_time[-1] if history.wall_time else 0.0
    own_rank_states, lost = resume_plan(checkpoint, resumed, world_size, module, objective)
    return Restored(history=history, start_step=start_step, elapsed=elapsed, seed=seed, finished=finished,
                    fit_end_pending=fit_end_pending, own_rank_states=own_rank_states, lost=lost)
