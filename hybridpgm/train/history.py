"""What :func:`hybridpgm.fit` returns: the per-step history and the result."""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field

import torch

from hybridpgm.train.checkpoint_history import is_packed_history, unpacked_history

__all__ = ["EXPLOSION_FACTOR", "FitResult", "History", "loss_explosions"]

#: a loss whose last value rises above this many times its first's magnitude (floored at 1) has exploded
EXPLOSION_FACTOR = 1e3


def _short(value, digits: int = 6) -> str:
    """A number of a :class:`History` series written short (anything else as a bounded ``repr``: a history read
    from a damaged checkpoint may hold it, and its repr must not raise)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return reprlib.repr(value)


@dataclass
class History:
    """Per-step record of a run.

    :ivar step: the number of completed optimizer cycles after each step (1, 2, ...).
    :ivar loss: player -> loss of each step (the mean over that player's repeats).
    :ivar wall_time: seconds since the start of the run (across resumes).
    :ivar examples_per_second: throughput of each step on this rank.
    :ivar metrics: name -> list of ``(step, value)`` written by callbacks.
    """

    step: list[int] = field(default_factory=list)
    loss: dict[str, list[float]] = field(default_factory=dict)
    wall_time: list[float] = field(default_factory=list)
    examples_per_second: list[float] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        """A summary of constant size, whatever the number of steps (a notebook cell showing a
        :class:`FitResult` of 100000 steps printed 7 MB of lists before): the steps recorded, each player's last
        loss, each metric's number of points and last value, and the wall time."""
        if not self.step:
            return "History(no steps)"
        steps = f"steps={len(self.step)} ({self.step[0]}..{self.step[-1]})"
        losses = ", ".join(f"{player!r}: {_short(values[-1])}" for player, values in self.loss.items() if values)
        metrics = ", ".join(f"{name!r}: {len(points)} point{'s' if len(points) > 1 else ''}, "
                            f"last {_short(points[-1][-1])}" for name, points in self.metrics.items() if points)
        wall = f", wall_time={_short(self.wall_time[-1], 4)} s" if self.wall_time else ""
        return f"History({steps}, last loss={{{losses}}}" + (f", metrics={{{metrics}}}" if metrics else "") + \
            f"{wall})"

    def record(self, step: int, losses: dict[str, float], wall_time: float, examples_per_second: float) -> None:
        self.step.append(step)
        for player, value in losses.items():
            self.loss.setdefault(player, []).append(value)
        self.wall_time.append(wall_time)
        self.examples_per_second.append(examples_per_second)

    def log_metric(self, name: str, step: int, value: float) -> None:
        self.metrics.setdefault(name, []).append((step, float(value)))

    def state_dict(self) -> dict:
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
        :func:`~hybridpgm.train.checkpoint_history.packed_history`, as a raw ``torch.load`` of it gives)."""
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


@dataclass
class FitResult:
    """Result of :func:`hybridpgm.fit`.

    :ivar history: the :class:`History` of the run (including resumed parts).
    :ivar steps: optimizer cycles completed.
    :ivar optimizers: player -> the optimizer used (to continue training).
    :ivar device: the device the module was trained on.
    :ivar stopped_early: whether a callback asked to stop.
    :ivar skipped_steps: player -> steps skipped for a non-finite loss or
        gradient (only with ``fit(..., skip_nonfinite=True)``; else all zero).
    :ivar loss_explosions: player -> ``(first loss, last loss)`` for players
        whose loss rose above :data:`EXPLOSION_FACTOR` times the first loss's
        magnitude (floored at 1; see :func:`loss_explosions`: a loss falling
        far below zero is not an explosion); empty for a healthy run.
    """

    history: History
    steps: int
    optimizers: dict[str, torch.optim.Optimizer]
    device: torch.device
    stopped_early: bool = False
    skipped_steps: dict[str, int] = field(default_factory=dict)
    loss_explosions: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        """Whether some player's loss exploded (see :attr:`loss_explosions`)."""
        return bool(self.loss_explosions)
