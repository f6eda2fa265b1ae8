"""Callbacks of :func:`hybridpgm.fit`: evaluation every N steps, early stopping.

A callback is any object with ``on_step_end(info)`` (and optionally
``on_fit_end(info)``); ``info`` is a :class:`StepInfo`.  Call
``info.request_stop()`` to end the run after the current step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.history import History

__all__ = ["Callback", "EarlyStopping", "EvaluateEvery", "StepInfo"]


@dataclass
class StepInfo:
    """What a callback sees after each step.

    :ivar step: optimizer cycles completed so far.
    :ivar epoch: the epoch (0-based) of the step's batch.
    :ivar losses: player -> loss of this step.
    :ivar objective: the objective being trained.
    :ivar history: the run's :class:`History` so far.
    :ivar device: the training device.
    :ivar is_main: whether this process is rank 0.
    :ivar reduce_mean: averages a number over ranks (identity in one process).
    """

    step: int
    epoch: int
    losses: dict[str, float]
    objective: Any
    history: History
    device: torch.device
    is_main: bool = True
    reduce_mean: Callable[[float], float] = float
    stop_requested: bool = field(default=False)

    def request_stop(self) -> None:
        self.stop_requested = True


class Callback:
    """Base class; override what you need."""

    def on_step_end(self, info: StepInfo) -> None:  # pragma: no cover - interface
        pass

    def on_fit_end(self, info: StepInfo) -> None:
        pass


class EvaluateEvery(Callback):
    """Run ``fn(objective)`` every ``every`` steps (and at the end) and log its
    result in ``history.metrics`` under ``name`` (a dict result logs each key),
    averaged over ranks under data parallelism.

    The module is put in ``eval()`` mode and gradients are off while ``fn`` runs.
    """

    def __init__(self, every: int, fn: Callable[[Any], float | dict[str, float]], name: str = "eval"):
        if every < 1:
            raise ConfigError(f"EvaluateEvery needs every >= 1, got {every}")
        self.every, self.fn, self.name = every, fn, name
        self._last_step = -1

    def _evaluate(self, info: StepInfo) -> None:
        module = info.objective.module
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                result = self.fn(info.objective)
        finally:
            module.train(was_training)
        items = result.items() if isinstance(result, dict) else [(self.name, result)]
        for key, value in items:
            info.history.log_metric(key, info.step, info.reduce_mean(float(value)))
        self._last_step = info.step

    def on_step_end(self, info: StepInfo) -> None:
        if info.step % self.every == 0:
            self._evaluate(info)

    def on_fit_end(self, info: StepInfo) -> None:
        if self._last_step != info.step:
            self._evaluate(info)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience``
    consecutive observations.

    :param monitor: a metric name logged by :class:`EvaluateEvery` (put this
        callback after it), or a player name to watch its training loss.
    :param mode: ``"min"`` or ``"max"``.
    """

    def __init__(self, monitor: str, patience: int = 5, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ConfigError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ConfigError(f"EarlyStopping needs patience >= 1, got {patience}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_rounds = 0
        self._seen = 0

    def _latest(self, history: History) -> float | None:
        if self.monitor in history.metrics:
            points = history.metrics[self.monitor]
            if len(points) > self._seen:
                self._seen = len(points)
                return points[-1][1]
            return None
        if self.monitor in history.loss:
            return history.loss[self.monitor][-1]
        return None  # not logged yet

    def on_fit_end(self, info: StepInfo) -> None:
        history = info.history
        if self.monitor not in history.metrics and self.monitor not in history.loss:
            raise ConfigError(
                f"EarlyStopping monitored {self.monitor!r}, which is neither a logged metric "
                f"{sorted(history.metrics)} nor a player {sorted(history.loss)}"
            )

    def on_step_end(self, info: StepInfo) -> None:
        value = self._latest(info.history)
        if value is None:
            return
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if improved:
            self.best, self.bad_rounds = value, 0
        else:
            self.bad_rounds += 1
            if self.bad_rounds >= self.patience:
                info.request_stop()
