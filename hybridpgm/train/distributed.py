"""Multi-process data parallelism for :func:`hybridpgm.fit` (``torchrun``).

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`current` initialises the
process group (NCCL on CUDA, gloo on CPU), pins each rank to its device
(``cuda:LOCAL_RANK``), and ``fit`` shards the data by rank.  Gradients are
all-reduced **once per optimizer step**, after the last micro-batch, as one
flattened bucket per player -- the effect of running all but the last
micro-batch of a ``DistributedDataParallel`` module under ``no_sync()``.

Why not wrap the module in ``DistributedDataParallel``: a Pyro model/guide
calls its sub-networks directly, never through the wrapper's ``forward``, so
DDP's reducer is not prepared for the backward pass; and multi-player
objectives back-propagate into one player's parameters at a time, which DDP's
unused-parameter detection cannot express.  Averaging the player's gradients
explicitly gives the same update with neither restriction.

Because losses are intensive (see :mod:`hybridpgm.train.objective`), the
average over ``W`` ranks of per-rank gradients on batches of ``B`` equals the
gradient of one process on the union batch of ``W * B``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from hybridpgm.errors import ConfigError

__all__ = ["DistributedContext", "current"]


@dataclass
class DistributedContext:
    """Rank information and the collectives ``fit`` needs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of a scalar over ranks."""
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def any(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def mean_of(self, value: float) -> float:
        """Average of a Python number over ranks (for evaluation metrics)."""
        if self.world_size == 1:
            return float(value)
        return float(self.mean(torch.tensor(float(value), dtype=torch.float64, device=self.device)))

    def gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def check_same(self, what: str, value: Any) -> None:
        """Raise :class:`~hybridpgm.errors.ConfigError` on every rank unless all
        ranks pass an equal ``value``; the message names the ranks that differ."""
        if self.world_size == 1:
            return
        values = self.gather_object(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise ConfigError(f"ranks disagree on the {what}: rank 0 has {values[0]!r}, "
                              + "; ".join(f"rank {r} has {values[r]!r}" for r in differ))

    def agree_on_seed(self, seed: int) -> int:
        """Rank 0's seed, so every rank shares the data order."""
        if self.world_size == 1:
            return seed
        t = torch.tensor([seed], dtype=torch.long, device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def all_reduce_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks in one bucket."""
        if self.world_size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n


def current(timeout_s: float | None = None) -> DistributedContext:
    """The context of this process: single-process unless launched by torchrun.

    :param timeout_s: collective timeout; a crashed rank makes the others fail
        after it instead of hanging (default ``HYBRIDPGM_DIST_TIMEOUT`` or 300 s).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    if not dist.is_initialized():
        if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
            raise ConfigError("WORLD_SIZE > 1 but RANK/MASTER_ADDR are not set: launch with torchrun")
        timeout_s = timeout_s or float(os.environ.get("HYBRIDPGM_DIST_TIMEOUT", "300"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if dist.get_backend() == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistributedContext(rank=rank, world_size=world_size, device=device)
