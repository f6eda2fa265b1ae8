"""What :func:`hybridpgm.fit` returns: the per-step history and the result."""

from __future__ import annotations

import copy
import math
import reprlib
from dataclasses import dataclass, field

import torch

from hybridpgm.main_module import class_path
from hybridpgm.train.checkpoint_history import is_packed_history, unpacked_history

__all__ = ["EXPLOSION_FACTOR", "FitResult", "History", "OptimizerState", "loss_explosions"]

#: a loss whose last value rises above this many times its first's magnitude (floored at 1) has exploded
EXPLOSION_FACTOR = 1e3


def _short(value, digits: int = 6) -> str:
    """A number of a :class:`History` series written short (anything else as a bounded ``repr``: a history read
    from a damaged checkpoint may hold it, and its repr must not raise)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return reprlib.repr(value)


def _point_value(point):
    """The value of a metric's ``(step, value)`` point (the point itself where it is no pair: see :func:`_short`)."""
    return point[-1] if isinstance(point, (tuple, list)) and point else point


@dataclass
class History:
    """Per-step record of a run.

    Each field defaults to empty.

    :param step: the number of completed optimizer cycles after each step (1, 2, ...).
    :param loss: player -> loss of each step (the mean over that player's repeats).
    :param wall_time: seconds since the start of the run (across resumes).
    :param examples_per_second: throughput of each step on this rank.
    :param metrics: name -> list of ``(step, value)`` written by callbacks.
    """

    step: list[int] = field(default_factory=list)
    loss: dict[str, list[float]] = field(default_factory=dict)
    wall_time: list[float] = field(default_factory=list)
    examples_per_second: list[float] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of steps (a notebook cell showing a
        :class:`FitResult` of 100000 steps printed 7 MB of lists before): the steps recorded (or ``no steps``),
        each player's last loss, each metric's number of points and last value, and the wall time, each part
        shown when the history holds it (a history with metrics but no step names its metrics)."""
        parts = [f"steps={len(self.step)} ({self.step[0]}..{self.step[-1]})" if self.step else "no steps"]
        losses = ", ".join(f"{player!r}: {_short(values[-1])}" for player, values in self.loss.items() if values)
        if losses:
            parts.append(f"last loss={{{losses}}}")
        metrics = ", ".join(f"{name!r}: {len(points)} point{'s' if len(points) > 1 else ''}, "
                            f"last {_short(_point_value(points[-1]))}" for name, points in self.metrics.items()
                            if points)
        if metrics:
            parts.append(f"metrics={{{metrics}}}")
        if self.wall_time:
            parts.append(f"wall_time={_short(self.wall_time[-1], 4)} s")
        return f"History({', '.join(parts)})"

    def record(self, step: int, losses: dict[str, float], wall_time: float, examples_per_second: float) -> None:
        """Append one step's entry to each series.

        :param step: the number of completed optimizer cycles after the step.
        :param losses: player -> the step's loss (appended to that player's series, created if new).
        :param wall_time: seconds since the start of the run.
        :param examples_per_second: the step's throughput on this rank.
        """
        self.step.append(step)
        for player, value in losses.items():
            self.loss.setdefault(player, []).append(value)
        self.wall_time.append(wall_time)
        self.examples_per_second.append(examples_per_second)

    def log_metric(self, name: str, step: int, value: float) -> None:
        """Append ``(step, float(value))`` to the metric ``name`` (created if new).

        :param name: the metric's name.
        :param step: the step the value was measured at.
        :param value: the metric's value (a real number, stored as ``float(value)``).
        """
        self.metrics.setdefault(name, []).append((step, float(value)))

    def state_dict(self) -> dict:
        """The series as plain lists and dicts (copies; a metric point as a ``[step, value]`` list), the form
        :meth:`from_state_dict` reads."""
        return {
            "step": list(self.step),
            "loss": {k: list(v) for k, v in self.loss.items()},
            "wall_time": list(self.wall_time),
            "examples_per_second": list(self.examples_per_second),
            "metrics": {k: [list(p) for p in v] for k, v in self.metrics.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        """The history of :meth:`state_dict`, or of a checkpoint's packed form (one tensor per series,
        :func:`~hybridpgm.train.checkpoint_history.packed_history`, as a raw ``torch.load`` of it gives).

        :param state: a dict from :meth:`state_dict`, or its packed form.
        """
        if is_packed_history(state):
            state = unpacked_history(state)
        return cls(
            step=list(state["step"]),
            loss={k: list(v) for k, v in state["loss"].items()},
            wall_time=list(state["wall_time"]),
            examples_per_second=list(state["examples_per_second"]),
            metrics={k: [(int(s), float(v)) for s, v in pts] for k, pts in state["metrics"].items()},
        )


def loss_explosions(history: History, factor: float = EXPLOSION_FACTOR) -> dict[str, tuple[float, float]]:
    """Players whose loss grew by orders of magnitude: player -> (first, last).

    Over a player's finite losses :math:`\\ell_1, \\dots, \\ell_T` (non-finite
    ones are steps skipped with ``skip_nonfinite``, counted apart), the loss
    has exploded when it *rose* that far:
    :math:`\\ell_T > \\text{factor} \\cdot \\max(|\\ell_1|, 1)`.  The comparison is
    signed: a loss that falls far below zero (a negative log-likelihood of
    tightly clustered data, say, from about 0 to -2000) has improved, not
    exploded, while one rising from -5 to 6000 has exploded.
    """
    out = {}
    for player, values in history.loss.items():
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) >= 2 and finite[-1] > factor * max(abs(finite[0]), 1.0):
            out[player] = (finite[0], finite[-1])
    return out


def _on_cpu(value):
    """``value`` (an optimizer's state dict, or a part of it) with every tensor a CPU copy (a CPU tensor as it
    is: it is only read)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


class OptimizerState:
    """What a pickled :class:`FitResult` keeps of one of its optimizers: the optimizer's class name and its
    ``state_dict()``, not a live optimizer.

    An optimizer holds the parameters it steps.  Pickled apart from its module it would come back stepping
    copies of them that no module holds (and the parameters of a Pyro objective carry a weak reference that
    does not pickle at all), so a pickle of the result keeps the state instead.  To go on from it, build the
    optimizer over the module's parameters and load the state into it::

        optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
        optimizer.load_state_dict(result.optimizers["elbo"].state_dict())

    Every other attribute of an optimizer (``step``, ``zero_grad``, ``param_groups``, ...) raises an
    :class:`AttributeError` saying so; the learning rates are in ``state_dict()["param_groups"]``.

    :param optimizer: the live optimizer whose state is kept (read, not changed).
    :ivar optimizer_type: the optimizer's qualified class name (``"torch.optim.adam.Adam"``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer_type = class_path(type(optimizer))  # "__main__." for a script's class in a spawn child
        # on the CPU, so that a result trained on a GPU unpickles anywhere (load_state_dict moves each tensor
        # to its parameter's device)
        self._state = _on_cpu(optimizer.state_dict())

    def state_dict(self) -> dict:
        """The optimizer's ``state_dict()`` at the end of the run, tensors on the CPU: a new copy at each call, so
        that the optimizers it is loaded into never share (and update) its tensors."""
        return copy.deepcopy(self._state)

    def __repr__(self) -> str:
        groups = self._state.get("param_groups", [])
        count = sum(len(group.get("params", ())) for group in groups)
        return f"OptimizerState({self.optimizer_type}, {count} parameter{'' if count == 1 else 's'}, not an optimizer)"

    def __getattr__(self, name: str):
        if name.startswith("__"):  # pickle and copy probing for protocol methods
            raise AttributeError(name)
        kind = self.__dict__.get("optimizer_type", "optimizer")
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}: an unpickled FitResult holds the state of "
            f"its {kind}, not the optimizer; build one over the module's parameters and load the state: "
            "optimizer.load_state_dict(result.optimizers[player].state_dict())")


@dataclass
class FitResult:
    """Result of :func:`hybridpgm.fit`.

    :param history: the :class:`History` of the run (including resumed parts).
    :param steps: optimizer cycles completed.
    :param optimizers: player -> the optimizer used (to continue training).  A pickle of the result
        (``pickle``, ``torch.save``, joblib, multiprocessing) keeps each optimizer's state instead: unpickled,
        ``optimizers`` holds an :class:`OptimizerState` per player, whose ``state_dict()`` loads into a fresh
        optimizer, and every other field as it was.  ``copy.copy`` and ``copy.deepcopy`` keep live optimizers
        (``deepcopy`` copies them with their parameters, as it copies a module).
    :param device: the device the module was trained on.
    :param stopped_early: whether a callback asked to stop (default ``False``).
    :param skipped_steps: player -> steps skipped: for a non-finite loss or gradient under
        ``fit(..., skip_nonfinite=True)``, and under ``precision="fp16"`` those whose scaled gradients overflowed,
        which the gradient scaler skips (a few at the start of a run are its warm-up; many in a row warn:
        :mod:`hybridpgm.train.scaler_step`).  The history holds a skipped step's loss all the same (under fp16 a
        finite one, at the parameters the step left unchanged).  All zero otherwise; default empty.
    :param loss_explosions: player -> ``(first loss, last loss)`` for players
        whose loss rose above :data:`EXPLOSION_FACTOR` times the first loss's
        magnitude (floored at 1; see :func:`loss_explosions`: a loss falling
        far below zero is not an explosion); empty for a healthy run (the default).
    """

    history: History
    steps: int
    optimizers: dict[str, torch.optim.Optimizer | OptimizerState]
    device: torch.device
    stopped_early: bool = False
    skipped_steps: dict[str, int] = field(default_factory=dict)
    loss_explosions: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether some player's loss exploded (see :attr:`loss_explosions`)."""
        return bool(self.loss_explosions)

    def __repr__(self) -> str:
        """One line: the history's summary, each player's optimizer by its class (not ``torch.optim``'s repr of
        every parameter group), and the other fields."""
        optimizers = ", ".join(f"{player!r}: " + (type(opt).__name__ if isinstance(opt, torch.optim.Optimizer)
                                                   else repr(opt)) for player, opt in self.optimizers.items())
        return (f"FitResult(steps={self.steps}, history={self.history!r}, optimizers={{{optimizers}}}, "
                f"device={self.device!r}, stopped_early={self.stopped_early}, skipped_steps={self.skipped_steps}, "
                f"loss_explosions={self.loss_explosions})")

    def __getstate__(self) -> dict:
        """The fields, each optimizer as its :class:`OptimizerState` (the result itself is not changed)."""
        state = dict(self.__dict__)
        state["optimizers"] = {player: OptimizerState(optimizer) if isinstance(optimizer, torch.optim.Optimizer)
                               else optimizer for player, optimizer in self.optimizers.items()}
        return state

    def __copy__(self) -> "FitResult":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict) -> "FitResult":
        """A copy with live optimizers: a copy is no pickle (a ``deepcopy`` of the module and the result together
        gives optimizers that step the copied module's parameters)."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new
