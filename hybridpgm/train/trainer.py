"""``fit``: train any objective of the training contract.

One *step* takes one batch.  For each player of the objective's schedule it
clears that player's gradients, splits the batch into ``accumulate``
micro-batches, back-propagates each micro-batch's loss (weighted by its share
of the batch) into that player's parameters only, optionally clips, and steps
the player's optimizer once (:class:`~hybridpgm.train.player_step.Player`).  See :mod:`hybridpgm.train.objective` for the
contract and :mod:`hybridpgm.train.distributed` for multi-process runs.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from typing import Any, Callable, Iterable, Mapping

import pyro
import torch
from tqdm.auto import tqdm

from hybridpgm.errors import CheckpointError, ConfigError
from hybridpgm.train import distributed
from hybridpgm.train.batches import BatchStream, as_dataset, batch_size_of, move_to, num_steps, split_batch
from hybridpgm.train.callbacks import StepInfo
from hybridpgm.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from hybridpgm.train.device import resolve_device
from hybridpgm.train.history import FitResult, History
from hybridpgm.train.objective import Objective, player_schedule
from hybridpgm.train.player_step import Player, autocast_for

__all__ = ["fit"]

OptimFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _per_player(option: Any, players: Iterable[str], what: str) -> dict[str, Any]:
    players = list(players)
    if isinstance(option, Mapping):
        missing = [p for p in players if p not in option]
        extra = [p for p in option if p not in players]
        if missing or extra:
            raise ConfigError(f"{what} dict must name exactly the players {players}; missing {missing}, unknown {extra}")
        return dict(option)
    return {p: option for p in players}


def _check_players(objective: Objective) -> dict[str, list[torch.nn.Parameter]]:
    players = objective.players()
    if not players:
        raise ConfigError(f"{type(objective).__name__}.players() is empty")
    owned = {id(p) for p in objective.module.parameters()}
    for name, params in players.items():
        params = list(params)
        if not params:
            raise ConfigError(f"player {name!r} of {type(objective).__name__} has no parameters")
        if any(id(p) not in owned for p in params):
            raise ConfigError(
                f"player {name!r} has parameters outside {type(objective).__name__}.module; "
                "checkpoints and data parallelism only see the module's parameters"
            )
        players[name] = params
    return players


def _validate(epochs: int, batch_size: int, accumulate: int, checkpoint_every: int | None,
              max_steps: int | None, clip_grad_norm: float | None) -> None:
    for name, value in [("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate)]:
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if accumulate > batch_size:
        raise ConfigError(f"accumulate={accumulate} micro-batches cannot split a batch of {batch_size}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ConfigError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigError(f"max_steps must be a positive integer, got {max_steps!r}")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ConfigError(f"clip_grad_norm must be positive, got {clip_grad_norm!r}")


def _build_players(objective: Objective, optim, lr_scheduler, precision: str | None,
                   device: torch.device) -> dict[str, Player]:
    params = _check_players(objective)
    factories = _per_player(optim or functools.partial(torch.optim.Adam, lr=1e-3), params, "optim")
    scheduler_factories = _per_player(lr_scheduler, params, "lr_scheduler") if lr_scheduler is not None else {}
    players = {}
    for name, group in params.items():
        optimizer = factories[name](group)
        scheduler = scheduler_factories[name](optimizer) if name in scheduler_factories else None
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        players[name] = Player(name, group, optimizer, scheduler, scaler)
    return players


def fit(
    objective: Objective,
    data: Any,
    *,
    epochs: int = 1,
    batch_size: int = 128,
    accumulate: int = 1,
    optim: OptimFactory | Mapping[str, OptimFactory] | None = None,
    clip_grad_norm: float | None = None,
    lr_scheduler: SchedulerFactory | Mapping[str, SchedulerFactory] | None = None,
    precision: str | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    callbacks: Iterable[Any] = (),
    max_steps: int | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> FitResult:
    """Train ``objective`` on ``data``.

    :param objective: an :class:`~hybridpgm.train.objective.Objective`.
    :param data: a tensor ``N x ...``, a tuple of tensors sharing ``N``, or a
        map-style :class:`torch.utils.data.Dataset`.
    :param epochs: passes over the data (per rank).
    :param batch_size: examples per optimizer step (per rank).
    :param accumulate: micro-batches the batch is split into; gradients are
        accumulated over them and the optimizer steps once, so the update does
        not depend on ``accumulate`` while peak activation memory falls by
        about that factor.
    :param optim: a factory called with a player's parameters (for example
        ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True)``),
        or a dict player -> factory.  Default: Adam with ``lr=1e-3``.
    :param clip_grad_norm: clip each player's gradient norm to this value.
    :param lr_scheduler: a factory called with an optimizer (stepped once per
        optimizer step), or a dict player -> factory.
    :param precision: ``None``/``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"``
        (autocast and a gradient scaler per player).
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; under
        ``torchrun`` each rank uses ``cuda:LOCAL_RANK`` (or the CPU with gloo).
    :param seed: seeds Pyro/torch/NumPy/Python RNGs and the data order; a run is
        reproducible given the seed.  Drawn at random (and recorded in the
        checkpoint) when ``None``.
    :param checkpoint: path of the checkpoint, written atomically every
        ``checkpoint_every`` steps and at the end (by rank 0).  If it exists and
        ``resume`` is true, training resumes from it (same seed, data order and
        RNG states; on another number of ranks the RNGs are reseeded).
    :param progress: show a tqdm progress bar (rank 0 only).
    :param callbacks: objects with ``on_step_end(info)`` / ``on_fit_end(info)``,
        see :mod:`hybridpgm.train.callbacks`.
    :param max_steps: stop after this many steps (over the whole run).
    :returns: a :class:`~hybridpgm.train.history.FitResult`.
    :raises TrainingDivergedError: a loss became NaN/inf; no update is applied
        and the checkpoint on disk is left as it was.
    """
    _validate(epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm)
    context = distributed.current()
    device = context.device if context.world_size > 1 else resolve_device(device)
    autocast_for(precision, device)  # validates the name
    schedule = player_schedule(objective)
    callbacks = list(callbacks)
    module = objective.module.to(device)
    module.train()
    players = _build_players(objective, optim, lr_scheduler, precision, device)
    dataset = as_dataset(data)
    context.check_same("configuration", {
        "batch_size": batch_size, "accumulate": accumulate, "epochs": epochs, "max_steps": max_steps,
        "players": {p: sum(x.numel() for x in pl.params) for p, pl in players.items()},
        "num_examples": len(dataset), "precision": precision,
    })

    history, start_step, elapsed, resumed = History(), 0, 0.0, None
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        resumed = load_checkpoint(checkpoint, map_location=device)
        if sorted(resumed["players"]) != sorted(players):
            raise CheckpointError(f"checkpoint {str(checkpoint)!r} holds players {sorted(resumed['players'])}, "
                                  f"the objective has {sorted(players)}")
        module.load_state_dict(resumed["module"])
        for name, player in players.items():
            player.load_state_dict(resumed["players"][name])
        if hasattr(objective, "load_state_dict") and resumed.get("objective") is not None:
            objective.load_state_dict(resumed["objective"])
        history = History.from_state_dict(resumed["history"])
        start_step, seed = int(resumed["step"]), int(resumed["seed"])
        elapsed = history.wall_time[-1] if history.wall_time else 0.0
    if seed is None:
        seed = secrets.randbelow(2**31)
    seed = context.agree_on_seed(seed)

    stream = BatchStream(dataset, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last,
                         rank=context.rank, world_size=context.world_size)
    total_steps = num_steps(stream.batches_per_epoch, epochs, max_steps)
    if resumed is not None and len(resumed["rng"]) == context.world_size:
        set_rng_state(resumed["rng"][context.rank])
    else:  # a fresh run, or a resume on another number of ranks
        pyro.set_rng_seed(seed + context.rank + 7919 * start_step)

    def write_checkpoint(step: int) -> None:
        rng = context.gather_object(rng_state())
        if checkpoint is not None and context.is_main:
            save_checkpoint(checkpoint, {
                "module": module.state_dict(),
                "players": {name: player.state_dict() for name, player in players.items()},
                "objective": objective.state_dict() if hasattr(objective, "state_dict") else None,
                "history": history.state_dict(),
                "rng": rng,
                "step": step,
                "seed": seed,
                "world_size": context.world_size,
            })
        context.barrier()

    bar = tqdm(total=total_steps, initial=start_step, disable=not (progress and context.is_main),
               desc=type(objective).__name__, unit="step", dynamic_ncols=True)
    info = None
    started = time.perf_counter() - elapsed
    try:
        for step in range(start_step, total_steps):
            step_started = time.perf_counter()
            batch = move_to(stream.batch(step), device)
            micro_batches = split_batch(batch, accumulate)
            losses: dict[str, list[float]] = {}
            for name in schedule:
                value = players[name].update(objective, micro_batches, step=step, context=context,
                                             precision=precision, device=device, clip_grad_norm=clip_grad_norm,
                                             checkpoint=checkpoint)
                losses.setdefault(name, []).append(value)
            if hasattr(objective, "train_step_end"):
                objective.train_step_end(step)
            step_losses = {p: sum(v) / len(v) for p, v in losses.items()}
            now = time.perf_counter()
            history.record(step + 1, step_losses, now - started, batch_size_of(batch) / max(now - step_started, 1e-12))
            bar.update(1)
            bar.set_postfix({p: f"{v:.4g}" for p, v in step_losses.items()}, refresh=False)
            info = StepInfo(step=step + 1, epoch=step // stream.batches_per_epoch, losses=step_losses,
                            objective=objective, history=history, device=device, is_main=context.is_main,
                            reduce_mean=context.mean_of)
            for callback in callbacks:
                callback.on_step_end(info)
            stop = context.any(info.stop_requested)
            if checkpoint_every is not None and (step + 1) % checkpoint_every == 0 and not stop:
                write_checkpoint(step + 1)
            if stop:
                break
    finally:
        bar.close()
    steps_done = history.step[-1] if history.step else start_step
    if info is not None:
        for callback in callbacks:
            if hasattr(callback, "on_fit_end"):
                callback.on_fit_end(info)
    write_checkpoint(steps_done)
    return FitResult(history=history, steps=steps_done, optimizers={p: pl.optimizer for p, pl in players.items()},
                     device=device, stopped_early=bool(info is not None and info.stop_requested))
