"""Callbacks of :func:`hybridpgm.fit`: evaluation every N steps, early stopping.

A callback is any object with ``on_step_end(info)`` (and optionally
``on_fit_start(start)`` and ``on_fit_end(info)``); ``info`` is a
:class:`StepInfo`, ``start`` a :class:`FitStart`.  Call
``info.request_stop()`` to end the run after the current step: the run is then
*finished*, and resuming its checkpoint runs no further step.

**Stateful callbacks resume** with the run (:mod:`hybridpgm.train.callback_states`): a callback with
``state_dict()`` and ``load_state_dict(state)``, as :class:`EvaluateEvery` and :class:`EarlyStopping` have, is
saved in ``fit``'s checkpoint with the ``settings()`` its state is kept under.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from hybridpgm.checks import positive_int, positive_real, type_name
from hybridpgm.errors import ConfigError
from hybridpgm.module_modes import keeping_modes
from hybridpgm.options import Option
from hybridpgm.rng_scope import restoring_global_rngs
from hybridpgm.train.callback_states import (callback_buffer_paths, callback_states,  # noqa: F401 (their former home)
                                             check_callback_settings, load_callback_states)
from hybridpgm.train.history import History

__all__ = ["Callback", "EarlyStopping", "EvaluateEvery", "FitStart", "StepInfo"]


@dataclass
class StepInfo:
    """What a callback sees after each step.

    :param step: optimizer cycles completed so far.
    :param epoch: the epoch (0-based) of the step's batch.
    :param losses: player -> loss of this step.
    :param objective: the objective being trained.
    :param history: the run's :class:`History` so far.
    :param device: the training device.
    :param is_main: whether this process is rank 0 (default ``True``).
    :param reduce_mean: averages a number over ranks (default ``float``: the identity in one process).
    :param stop_requested: whether a callback has asked to end the run after this step (default ``False``;
        set by :meth:`request_stop`).
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
        """End the run after the current step (sets ``stop_requested``): the run is then *finished*, and
        resuming its checkpoint runs no further step."""
        self.stop_requested = True


@dataclass
class FitStart:
    """What a callback's ``on_fit_start`` sees, before the first step (after a resume has restored the
    callback states and the history).

    :param step: steps completed so far (0, or the step a resumed run continues from).
    :param players: the objective's player names (the keys of ``history.loss``).
    :param callbacks: every callback of the run, in order.
    :param history: the run's :class:`History` so far.
    """

    step: int
    players: tuple[str, ...]
    callbacks: tuple[Any, ...]
    history: History


class Callback:
    """Base class; override what you need."""

    def on_fit_start(self, start: FitStart) -> None:
        """Called once before the first step (after a resume has restored the callback states); does nothing.

        :param start: the run's step, players, callbacks and history.
        """

    def on_step_end(self, info: StepInfo) -> None:  # pragma: no cover - interface
        """Called after each step; does nothing.

        :param info: what the step did (call ``info.request_stop()`` to end the run).
        """

    def on_fit_end(self, info: StepInfo) -> None:
        """Called once when the run ends normally, after :func:`hybridpgm.fit` has written its final checkpoint
        (if it has a ``checkpoint`` path); not after a stop signal (the resumed run that finishes calls it); does
        nothing.

        :param info: the last step's :class:`StepInfo`.
        """


class EvaluateEvery(Callback):
    """Run ``fn(objective)`` every ``every`` steps (and at the end) and log its
    result in ``history.metrics`` under ``name`` (a dict result logs each key),
    averaged over ranks under data parallelism.

    :param every: the number of steps between evaluations (a positive integer).
    :param fn: called with the objective; returns a real number or a dict of them.
    :param name: the metric name of a number result (default ``"eval"``; a dict result logs under its keys).

    The module is put in ``eval()`` mode and gradients are off while ``fn`` runs, and the random streams it
    draws from (torch's CPU generator and those of the CUDA devices of the module and of the run, NumPy's,
    Python's; :func:`~hybridpgm.rng_scope.restoring_global_rngs`) are put back afterwards: an ``fn`` that
    draws (a Monte Carlo ELBO, samples) does not change the trained model.  ``fn`` returns a
    real number (a Python or NumPy number, or a one-element real tensor) or a dict of them.

    The end-of-run evaluation runs in ``on_fit_end``, after :func:`hybridpgm.fit` has written its
    checkpoint (and before it writes it again with the evaluation), so an ``fn`` that fails then loses no
    step: running the same ``fit`` call again resumes and evaluates.

    :raises ConfigError: ``every`` not a positive integer (``bool`` and fractions refused), ``fn`` not
        callable, or ``name`` not a non-empty string.  During the run: ``fn`` returned something else than
        a real number, a one-element real tensor or a dict of them (the message names the callback, the
        metric and the type returned).
    """

    every = Option(lambda self, value: positive_int(value, "EvaluateEvery every"), """The number of steps between
        evaluations; an assignment is checked as the constructor checks it (:class:`~hybridpgm.options.Option`).

        :raises ConfigError: (on assignment) a value that is not a positive integer (``0`` would stop the run
            with a ``ZeroDivisionError`` at its first step).""")

    def __init__(self, every: int, fn: Callable[[Any], float | dict[str, float]], name: str = "eval"):
        self.every = every  # checked first, by the option
        if not callable(fn):
            raise ConfigError(f"EvaluateEvery fn must be a callable taking the objective, got {type(fn).__name__}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"EvaluateEvery name must be a non-empty string, got {name!r}")
        self.fn, self.name = fn, name
        self._last_step = -1

    def _evaluate(self, info: StepInfo) -> None:
        module = info.objective.module
        devices = [info.device, *(t.device for t in module.parameters()), *(t.device for t in module.buffers())]
        # each sub-module back in its own mode (a frozen one too); a Monte Carlo metric's draws leave training's
        # random streams as they were
        with keeping_modes(module), torch.no_grad(), restoring_global_rngs(devices):
            module.eval()
            result = self.fn(info.objective)
        items = result.items() if isinstance(result, dict) else [(self.name, result)]
        values = [(key, self._number(key, value)) for key, value in items]
        for key, value in values:
            info.history.log_metric(key, info.step, info.reduce_mean(value))
        self._last_step = info.step

    def _number(self, key: Any, value: Any) -> float:
        """``value`` as a float, if it is a real number or a one-element real tensor (never a bool)."""
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool \
                and not value.is_complex():
            return float(value.detach())
        if value is None:
            what = "None"
        elif isinstance(value, torch.Tensor):
            what = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
        elif type(value).__module__ == "builtins":
            what = f"a {type(value).__name__}"
        else:
            what = f"a {type_name(value)}"
        raise ConfigError(f"EvaluateEvery(name={self.name!r}): fn returned {what} for the metric {key!r}; it must "
                          "return a real number, a one-element real tensor, or a dict of them")

    def settings(self) -> dict[str, Any]:
        """What the state is counted in (saved next to it; a resume with another ``every`` is refused unless
        hyperparameters are overridden)."""
        return {"every": self.every}

    def state_dict(self) -> dict[str, Any]:
        """The step of the last evaluation (so the end-of-run one is not repeated after a resume)."""
        return {"last_step": self._last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step of the last evaluation.

        :param state: a dict from :meth:`state_dict`.
        """
        self._last_step = int(state["last_step"])

    def on_fit_start(self, start: FitStart) -> None:
        """Forget the last evaluation's step on a fresh run (``start.step == 0``), as when this object is reused.

        :param start: the :class:`FitStart` (``start.step`` is 0 on a fresh run).
        """
        if start.step == 0:  # a fresh run: nothing of an earlier fit's (this object reused) carries over
            self._last_step = -1

    def on_step_end(self, info: StepInfo) -> None:
        """Evaluate when ``info.step`` is a multiple of ``every``.

        :param info: the step's :class:`StepInfo`.
        """
        if info.step % self.every == 0:
            self._evaluate(info)

    def on_fit_end(self, info: StepInfo) -> None:
        """Evaluate at the last step, unless that step was evaluated already.

        :param info: the last step's :class:`StepInfo`.
        """
        if self._last_step != info.step:
            self._evaluate(info)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience``
    consecutive observations.

    :param monitor: a metric name logged by :class:`EvaluateEvery` (put this
        callback after it), or a player name to watch its training loss.
    :param patience: the number of consecutive observations without improvement that stops the run (a
        positive integer, default 5).
    :param mode: ``"min"`` (the default) or ``"max"``.
    :param min_delta: an improvement must beat the best value by more than this (a finite number >= 0; the default
        0 counts any strict improvement).
    :raises ConfigError: ``monitor`` not a non-empty string, an unknown ``mode``, ``patience`` not a positive
        integer, or ``min_delta`` not a finite number >= 0.  From :func:`hybridpgm.fit`: a ``monitor`` that
        is not a player when no callback of the run logs metrics (before the first step), or that the
        run's :class:`EvaluateEvery` callbacks have not logged once each has evaluated (one step after
        the largest ``every``), so that a misspelt name does not cost the whole run.  Where another
        callback of the user's may log metrics, the name is checked at the end of the run.

    The four are attributes that may be assigned later (:class:`~hybridpgm.options.Option`), checked as the
    constructor checks them (same error and message; a refused value leaves the old one).  ``patience`` and
    ``min_delta`` apply from the next observation on, to the best value and count so far.  ``monitor`` and ``mode``
    say what those are, so another value restarts the watch, as a fresh run's start does: ``best`` at
    :math:`\\pm\\infty` for the mode, no round without improvement, and the monitor's latest value observed anew.
    """

    monitor = Option(lambda self, value: self._watch("monitor", value), """The metric or player watched.

        :raises ConfigError: (on assignment) not a non-empty string (another name restarts the watch).""")
    mode = Option(lambda self, value: self._watch("mode", value), """``"min"`` or ``"max"``.

        :raises ConfigError: (on assignment) another value (the other mode restarts the watch).""")
    patience = Option(lambda self, value: positive_int(value, "EarlyStopping patience"), """Observations without
        improvement that stop the run.

        :raises ConfigError: (on assignment) a value that is not a positive integer.""")
    min_delta = Option(lambda self, value: positive_real(value, "EarlyStopping min_delta", allow_zero=True),
                       """The margin of an improvement.

        :raises ConfigError: (on assignment) a value that is not a finite number >= 0.""")

    def __init__(self, monitor: str, patience: int = 5, mode: str = "min", min_delta: float = 0.0):
        self.monitor, self.mode = monitor, mode  # checked by the options, in the constructor's order
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_rounds = 0
        self._seen = 0
        self._deadline: int | None = None  # the step by which an unknown monitor must have been logged

    def _watch(self, name: str, value: Any) -> str:
        """``value`` checked for the option ``name`` (``"monitor"`` or ``"mode"``; see the class docstring)."""
        if not isinstance(value, str) or not value or (name == "mode" and value not in ("min", "max")):
            raise ConfigError(f"EarlyStopping mode must be 'min' or 'max', got {value!r}" if name == "mode" else
                              f"EarlyStopping monitor must be a metric or player name, got {value!r}")
        if "best" in vars(self) and vars(self).get(name) != value:  # another metric or direction: the watch anew
            self.best = math.inf if (value if name == "mode" else self.mode) == "min" else -math.inf
            self.bad_rounds = self._seen = 0
        return value

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

    def settings(self) -> dict[str, Any]:
        """What the best value and the counters mean (saved next to them; a resume with other settings is refused
        unless hyperparameters are overridden)."""
        return {"monitor": self.monitor, "mode": self.mode, "min_delta": self.min_delta, "patience": self.patience}

    @staticmethod
    def shaped_by_settings(state: dict[str, Any]) -> bool:
        """Whether a saved ``state`` has observed a value (a state that has not, as after a misspelt monitor,
        resumes under any settings).

        :param state: a dict from :meth:`state_dict`.
        """
        return state.get("best") is not None or bool(state.get("bad_rounds")) or bool(state.get("seen"))

    def state_for_settings(self, state: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
        """The saved ``state`` to load under this callback's settings, which differ from the ``saved`` ones
        (``override_hyperparameters=True``): the best value and the counters of another monitor, or of the
        other mode, are not this one's, so it starts afresh; another ``patience`` or ``min_delta`` keeps them.

        :param state: a dict from :meth:`state_dict`.
        :param saved: the :meth:`settings` it was saved under.
        """
        if (saved.get("monitor"), saved.get("mode")) != (self.monitor, self.mode):
            return {"best": None, "bad_rounds": 0, "seen": 0}
        return state

    def state_dict(self) -> dict[str, Any]:
        """Best value so far (``None`` before the first observation), bad rounds, values seen."""
        return {"best": self.best if math.isfinite(self.best) else None, "bad_rounds": self.bad_rounds,
                "seen": self._seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and the counters.

        :param state: a dict from :meth:`state_dict`.
        """
        best = state["best"]
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.bad_rounds, self._seen = int(state["bad_rounds"]), int(state["seen"])

    def _check_logged(self, history: History) -> None:
        if self.monitor not in history.metrics and self.monitor not in history.loss:
            raise ConfigError(
                f"EarlyStopping monitored {self.monitor!r}, which is neither a logged metric "
                f"{sorted(history.metrics)} nor a player {sorted(history.loss)}"
            )

    def on_fit_start(self, start: FitStart) -> None:
        """Reset the best value and the counters on a fresh run (``start.step == 0``), and check that
        ``monitor`` is a player or will be logged: with no callback that may log it, a :class:`ConfigError` now;
        with only :class:`EvaluateEvery` callbacks, one step after the largest ``every``.

        :param start: the :class:`FitStart` (``start.step`` is 0 on a fresh run).
        :raises ConfigError: ``monitor`` is not a player and no callback of the run logs metrics.
        """
        self._deadline = None
        if start.step == 0:  # a fresh run: an earlier fit's best value and patience (this object reused) go
            self.best = math.inf if self.mode == "min" else -math.inf
            self.bad_rounds = self._seen = 0
        if self.monitor in start.players or self.monitor in start.history.metrics:
            return
        evaluators = [c for c in start.callbacks if isinstance(c, EvaluateEvery)]
        if any(not isinstance(c, (EvaluateEvery, EarlyStopping)) for c in start.callbacks):
            return  # a callback of the user's may log it: checked at the end of the run
        if not evaluators:
            raise ConfigError(f"EarlyStopping monitors {self.monitor!r}, which is not a player "
                              f"{sorted(start.players)}, and no callback of this run logs metrics (add an "
                              "EvaluateEvery that logs it, before the EarlyStopping)")
        # every evaluator has run once by then (the +1: one placed after this callback runs a step later)
        self._deadline = start.step + max(e.every for e in evaluators) + 1

    def on_fit_end(self, info: StepInfo) -> None:
        """Check that ``monitor`` was logged.

        :param info: the last step's :class:`StepInfo`.
        :raises ConfigError: ``monitor`` is neither a logged metric nor a player.
        """
        self._check_logged(info.history)

    def on_step_end(self, info: StepInfo) -> None:
        """Compare the latest value of ``monitor`` (a new metric point, or the player's loss of this step) with
        the best so far, and request a stop after ``patience`` observations without improvement.

        :param info: the step's :class:`StepInfo`.
        :raises ConfigError: ``monitor`` not logged by the step it must be by (see :meth:`on_fit_start`).
        """
        if self._deadline is not None and info.step >= self._deadline:
            self._deadline = None
            self._check_logged(info.history)
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
