"""What :func:`hybridpgm.fit` returns: the per-step history and the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["FitResult", "History"]


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
        return cls(
            step=list(state["step"]),
            loss={k: list(v) for k, v in state["loss"].items()},
            wall_time=list(state["wall_time"]),
            examples_per_second=list(state["examples_per_second"]),
            metrics={k: [(int(s), float(v)) for s, v in pts] for k, pts in state["metrics"].items()},
        )


@dataclass
class FitResult:
    """Result of :func:`hybridpgm.fit`.

    :ivar history: the :class:`History` of the run (including resumed parts).
    :ivar steps: optimizer cycles completed.
    :ivar optimizers: player -> the optimizer used (to continue training).
    :ivar device: the device the module was trained on.
    :ivar stopped_early: whether a callback asked to stop.
    """

    history: History
    steps: int
    optimizers: dict[str, torch.optim.Optimizer]
    device: torch.device
    stopped_early: bool = False
