"""One player's update: accumulate micro-batch gradients, check, sync, step.

Kept apart from :func:`hybridpgm.fit` so the update rule -- the part that
must be exactly right for accumulation, mixed precision and data parallelism
-- reads in one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from hybridpgm.errors import ConfigError, TrainingDivergedError
from hybridpgm.train.distributed import DistributedContext

__all__ = ["PRECISIONS", "Player", "autocast_for"]

#: precision name -> autocast dtype (``None``: full precision, no autocast)
PRECISIONS = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(precision: str | None, device: torch.device):
    """The autocast context of a precision on a device (a no-op for fp32)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(k for k in PRECISIONS if k)} or None, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Player:
    """A player's parameters, optimizer, scheduler and (fp16) gradient scaler."""

    name: str
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    scaler: Any = None

    def update(self, objective: Any, micro_batches: list[tuple[Any, float]], *, step: int,
               context: DistributedContext, precision: str | None, device: torch.device,
               clip_grad_norm: float | None, checkpoint: Any = None) -> float:
        """Run the micro-batches, then one optimizer step.  Returns the loss.

        Micro-batch ``i`` with weight ``m_i / B`` contributes
        ``m_i / B * loss_i`` to the gradient; the gradients are averaged over
        ranks once, after the last micro-batch.
        """
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for micro, weight in micro_batches:
            with autocast_for(precision, device):
                loss = objective.loss(self.name, micro)
            if loss.dim() != 0:
                raise ConfigError(f"{type(objective).__name__}.loss({self.name!r}) returned shape "
                                  f"{tuple(loss.shape)}, expected a scalar")
            weighted = loss.float() * weight
            (self.scaler.scale(weighted) if self.scaler else weighted).backward(inputs=self.params)
            total = total + weighted.detach()
        value = float(context.mean(total))
        if value != value or value in (float("inf"), float("-inf")):
            where = f" and {str(checkpoint)!r} keeps the last good state" if checkpoint else ""
            raise TrainingDivergedError(f"loss of player {self.name!r} is {value} at step {step}; "
                                        f"no update was applied{where}", step=step, player=self.name)
        context.all_reduce_gradients(self.params)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, clip_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return value

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
