"""The options of :func:`~hybridpgm.train.trainer.fit`, checked before any step runs.

Counts are integers (NumPy integers accepted; ``bool`` and fractional values refused, through
:mod:`hybridpgm.checks`), seeds lie in ``[0, 2**32)``, optimizers and schedulers are factories, callbacks
come in a list, and per-player options name exactly the objective's players.  Every refusal is a
:class:`~hybridpgm.errors.ConfigError` naming the argument.
"""

from __future__ import annotations

from collections.abc import Iterable as IterableABC
from typing import Any, Iterable, Mapping

import torch

from hybridpgm.checks import positive_int, positive_real, sample_count
from hybridpgm.errors import ConfigError
from hybridpgm.train.objective import Objective

__all__ = ["SEED_BOUND", "callback_list", "check_counts", "check_factory", "check_players", "per_player", "rng_seed"]

#: seeds are below this bound (NumPy's RNG refuses larger ones)
SEED_BOUND = 2**32


def per_player(option: Any, players: Iterable[str], what: str) -> dict[str, Any]:
    """``option`` for each of ``players``: the dict given (naming exactly the players), or the one value for all.

    :raises ConfigError: a dict that misses a player or names an unknown one."""
    players = list(players)
    if isinstance(option, Mapping):
        missing = [p for p in players if p not in option]
        extra = [p for p in option if p not in players]
        if missing or extra:
            raise ConfigError(f"{what} dict must name exactly the players {players}; missing {missing}, "
                              f"unknown {extra}")
        return dict(option)
    return {p: option for p in players}


def check_players(objective: Objective) -> dict[str, list[torch.nn.Parameter]]:
    """The objective's players as lists of parameters, each non-empty and inside ``objective.module``.

    :raises ConfigError: no players, a player without parameters, or parameters outside the module."""
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


def check_counts(epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm, seed,
              collective_timeout) -> tuple:
    """The counts and numbers of :func:`~hybridpgm.train.trainer.fit` checked (integers as ``int``; NumPy scalars
    accepted, ``bool`` and fractional counts refused), in the order given.

    :raises ConfigError: naming the argument and the value given."""
    epochs, batch_size, accumulate = (positive_int(v, n) for n, v in
                                      [("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate)])
    if accumulate > batch_size:
        raise ConfigError(f"accumulate={accumulate} micro-batches cannot split a batch of {batch_size}")
    if checkpoint_every is not None:
        checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    if max_steps is not None:
        max_steps = positive_int(max_steps, "max_steps")
    if clip_grad_norm is not None:
        clip_grad_norm = positive_real(clip_grad_norm, "clip_grad_norm")
    if seed is not None:
        seed = sample_count(seed, "seed")
        if seed >= SEED_BOUND:
            raise ConfigError(f"seed must be below 2**32 (NumPy's bound), got {seed}")
    if collective_timeout is not None:
        collective_timeout = positive_real(collective_timeout, "collective_timeout")
    return epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm, seed, collective_timeout


def rng_seed(seed: int, rank: int, step: int) -> int:
    """The seed of Pyro's, torch's, NumPy's and Python's RNGs for ``rank`` of a run of ``seed`` (re)started at
    optimizer step ``step``, reduced below :data:`SEED_BOUND` (NumPy refuses larger seeds; without the reduction
    a run resumed on another number of ranks after about 270,000 steps failed)."""
    return (seed + rank + 7919 * step) % SEED_BOUND


def check_factory(option, what: str):
    """Raise :class:`ConfigError` when ``option`` (of ``optim`` or ``lr_scheduler``) is an instance already
    built rather than a factory (the mistake of passing ``torch.optim.SGD(params, lr=...)``)."""
    called_with = "an optimizer" if what == "lr_scheduler" else "a player's parameters"
    for value in (option.values() if isinstance(option, Mapping) else [option]):
        if isinstance(value, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)) or not callable(value):
            raise ConfigError(f"{what} must be a factory called with {called_with} (for example "
                              f"functools.partial(torch.optim.SGD, lr=0.1)), or a dict player -> factory; got an "
                              f"instance of {type(value).__name__}")


def callback_list(callbacks) -> list:
    """``callbacks`` as a list; :class:`ConfigError` for a single callback or a non-iterable."""
    if hasattr(callbacks, "on_step_end") or hasattr(callbacks, "on_fit_end") or not isinstance(callbacks, IterableABC):
        raise ConfigError(f"callbacks must be an iterable of callbacks (a list), got {type(callbacks).__name__}; "
                          f"wrap a single one in a list")
    return list(callbacks)
