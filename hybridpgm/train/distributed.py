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
gradient of one process on the union batch of ``W * B``.  A parameter that no
rank's loss reached keeps no gradient (``.grad`` is ``None``), so the optimizer
leaves it alone as it would in one process
(:meth:`DistributedContext.all_reduce_gradients`).  Batch normalisation, which
each rank applies to its own shard, is the exception: ``fit`` warns about it.

At the start ``fit`` broadcasts rank 0's module state (parameters and
buffers, one bucket per dtype, as DDP does) and checks that every rank asked
for the same configuration and optimizer hyperparameters.  Collectives time
out after ``timeout_s`` (default 60 s on gloo/CPU, 300 s on NCCL, or
``HYBRIDPGM_DIST_TIMEOUT``); a :class:`~hybridpgm.train.heartbeat.Heartbeat`
then names the rank that stopped progressing.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

from hybridpgm.errors import ConfigError
from hybridpgm.train.distributed_checks import collective_timeout_s, sparse_gradient_error

__all__ = ["DEFAULT_TIMEOUT_S", "DistributedContext", "current", "differences"]

#: default collective timeout in seconds per backend (``HYBRIDPGM_DIST_TIMEOUT`` overrides)
DEFAULT_TIMEOUT_S = {"gloo": 60.0, "nccl": 300.0}


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(path, value in a, value in b)`` for every leaf where nested dicts/lists differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            where = f"{path}[{key!r}]" if path else str(key)
            if key not in a or key not in b:
                out.append((where, a.get(key, "<absent>"), b.get(key, "<absent>")))
            else:
                out.extend(differences(a[key], b[key], where))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and not (
            a and not isinstance(a[0], (dict, list, tuple))):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path or "value", a, b)]


@dataclass
class DistributedContext:
    """Rank information and the collectives ``fit`` needs."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None
    timeout_s: float | None = None
    #: a :class:`~hybridpgm.train.heartbeat.Heartbeat` while ``fit`` runs on several ranks
    heartbeat: Any = None

    @contextlib.contextmanager
    def _waiting(self, collective: str) -> Iterator[None]:
        if self.heartbeat is None:
            yield
        else:
            with self.heartbeat.waiting(collective):
                yield

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            with self._waiting("barrier"):
                dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of a scalar over ranks."""
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        with self._waiting("all_reduce"):
            dist.all_reduce(value)
        return value / self.world_size

    def any(self, flag: bool) -> bool:
        return self.agree_on_stop(flag, 0)[0]

    def agree_on_stop(self, requested: bool, signum: int) -> tuple[bool, int]:
        """Whether any rank asked to stop, and the largest signal number any
        rank received (0: none), in one collective."""
        if self.world_size == 1:
            return bool(requested), int(signum)
        t = torch.tensor([float(bool(requested)), float(signum)], device=self.device)
        with self._waiting("all_reduce (end of step)"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag, sig = t.tolist()
        return flag > 0, int(sig)

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
        with self._waiting("all_gather_object"):
            dist.all_gather_object(out, obj)
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (``None`` on the others).
        Tensors in ``obj`` travel pickled: pass them on the CPU."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        with self._waiting("gather_object"):
            dist.gather_object(obj, out, dst=0)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        with self._waiting("broadcast_object_list"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module_state(self, module: torch.nn.Module, buffers: bool = True) -> None:
        """Copy rank 0's parameters and buffers to every rank (one bucket per
        dtype), so ranks that initialised differently start identical.

        :param buffers: copy the buffers too; ``False`` when every rank restores
            its own (a resume on the number of ranks that wrote the checkpoint).
        """
        if self.world_size == 1:
            return
        tensors = [t for t in list(module.parameters()) + (list(module.buffers()) if buffers else []) if t.numel()]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        with torch.no_grad(), self._waiting("broadcast (module state)"):
            for group in by_dtype.values():
                flat = torch.cat([t.detach().reshape(-1).to(self.device) for t in group])
                dist.broadcast(flat, src=0)
                offset = 0
                for t in group:
                    t.copy_(flat[offset: offset + t.numel()].view_as(t))
                    offset += t.numel()

    def check_same(self, what: str, value: Any) -> None:
        """Raise :class:`~hybridpgm.errors.ConfigError` on every rank unless all
        ranks pass an equal ``value``; the message names the ranks that differ."""
        if self.world_size == 1:
            return
        values = self.gather_object(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            parts = []
            for r in differ:
                for where, mine, theirs in differences(values[0], values[r]):
                    parts.append(f"{where}: rank 0 has {mine!r}, rank {r} has {theirs!r}")
            raise ConfigError(f"ranks disagree on the {what}: " + "; ".join(parts))

    def agree_on_seed(self, seed: int | None) -> int | None:
        """Rank 0's seed, so every rank shares the data order: an integer in ``[0, 2**32)``, or ``None`` (no
        seed asked for, sent as -1) when rank 0's is ``None``."""
        if self.world_size == 1:
            return seed
        t = torch.tensor([-1 if seed is None else seed], dtype=torch.long, device=self.device)
        with self._waiting("broadcast (seed)"):
            dist.broadcast(t, src=0)
        value = int(t.item())
        return None if value < 0 else value

    def all_reduce_gradients(self, params: list[torch.nn.Parameter],
                             extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """Average the gradients of ``params`` over ranks in one bucket.

        A parameter without a gradient on this rank (``.grad`` is ``None``: the loss never reached it)
        takes part with zeros, as it would in one process's sum over the union batch.  The bucket also
        carries one flag per parameter, whether this rank had a gradient, so that a parameter no rank
        reached keeps ``.grad = None`` and the optimizer leaves it alone, as in one process (weight decay
        and momentum would otherwise move it).  Deciding that reads the flags from the device, which
        happens only on a rank that lacks a gradient itself (a parameter with a gradient here is reached
        by some rank).

        Each parameter gets a new ``.grad``: the tensor that was its ``.grad`` is read, never written, so a
        caller holding it still has this rank's own gradient afterwards (which
        :class:`~hybridpgm.train.player_step.Player` inspects only when the average is not finite).

        :param extra: a float tensor averaged in the same bucket (the loss, and with it the per-rank
            flags of :meth:`in_rank_slots`), so the step needs one collective, not two.
        :returns: the rank average of ``extra``, of its shape and dtype (``extra`` itself on one rank).
        """
        if self.world_size == 1:
            return extra
        local = [p.grad is not None for p in params]
        try:
            parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        except (RuntimeError, NotImplementedError):  # a sparse gradient: named (no check on the dense path)
            error = sparse_gradient_error(params, self.world_size)
            if error is None:
                raise
            raise error from None
        if extra is not None:
            parts.append(extra.detach().reshape(-1))
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in parts))
        parts.append(torch.tensor(local, dtype=dtype, device=parts[0].device))  # 0/1: exact in any float dtype
        flat = torch.cat(parts)  # promotes to the widest dtype of the bucket
        with self._waiting("all_reduce (gradients)"):
            dist.all_reduce(flat)
        missing = [i for i, had in enumerate(local) if not had]
        reached = [True] * len(params)
        if missing:  # did another rank reach them? (the flags count the ranks that had a gradient)
            counts = flat[len(flat) - len(params):]
            for i, other in zip(missing, (counts[missing] > 0).tolist()):
                reached[i] = other
        flat /= self.world_size
        offset = 0
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone() if reached[i] else None
            offset += n
        if extra is None:
            return None
        return flat[offset : offset + extra.numel()].view_as(extra).to(extra.dtype)

    def flagged_ranks(self, flag: torch.Tensor) -> list[int]:
        """The ranks whose ``flag`` (a 0-d bool or number, nonzero: set) is set, on every rank, in rank order: one
        all-reduce of the flags in rank slots (:meth:`in_rank_slots`) and one read.  Every rank must call it
        (for the error path of a step, which every rank takes together); ``[r]`` or ``[]`` on one rank."""
        if self.world_size == 1:
            return [self.rank] if bool(flag) else []
        slots = self.in_rank_slots(flag.reshape(1).to(torch.float32))
        with self._waiting("all_reduce (flags of the ranks)"):
            dist.all_reduce(slots)
        return [r for r, value in enumerate(slots.tolist()) if value > 0]

    def in_rank_slots(self, values: torch.Tensor) -> torch.Tensor:
        r"""``values`` (shape ``(k,)``) in this rank's column of a ``(k, world_size)`` matrix of zeros,
        flattened to ``(k * world_size,)``, with no device synchronisation.

        Summed over ranks, entry :math:`i \cdot W + r` is rank :math:`r`'s ``values[i]``: one all-reduce
        tells every rank whose flag is set (as part of :meth:`all_reduce_gradients`'s ``extra``, which
        averages, it is rank :math:`r`'s value over :math:`W`: a set flag stays positive).
        """
        slots = torch.zeros(values.numel(), self.world_size, dtype=values.dtype, device=values.device)
        slots[:, self.rank] = values.reshape(-1)
        return slots.reshape(-1)


def current(timeout_s: float | None = None) -> DistributedContext:
    """The context of this process: single-process unless launched by torchrun.

    :param timeout_s: collective timeout in seconds; a crashed or frozen rank
        makes the others fail after it instead of hanging (default
        ``HYBRIDPGM_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT_S` of the backend:
        60 s on gloo/CPU, 300 s on NCCL).  It applies when this call creates
        the process group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    if not dist.is_initialized():
        if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
            raise ConfigError("WORLD_SIZE > 1 but RANK/MASTER_ADDR are not set: launch with torchrun")
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        timeout_s = _timeout(timeout_s, backend)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        atexit.register(_shut_down_at_exit)  # the group hybridpgm created is shut down before the interpreter's end
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if dist.get_backend() == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistributedContext(rank=rank, world_size=world_size, device=device,
                              timeout_s=_timeout(timeout_s, dist.get_backend()))


#: the longest the exit hook waits for the collective backend's worker threads to go idle, seconds
EXIT_IDLE_WAIT_S = 2.0

#: names of the backend's worker threads (as torch names them) that may still hold finished work at exit
_WORKER_THREADS = ("pt_gloo_runloop",)


def _shut_down_at_exit() -> None:
    """Destroy the process group hybridpgm created and let its worker threads go idle before Python finalizes.

    A gloo worker thread releases a finished collective -- and the Python tensors it holds -- a moment after
    the collective reports completion.  If that release falls in the interpreter's finalization, the thread
    cannot take the GIL and the process aborts (``terminate called without an active exception``) after a
    run that succeeded, and torchrun reports the job failed.  Destroying the group does not join those
    threads while other references keep the backend alive (importing ``torch._dynamo``, as every
    ``torch.optim`` optimizer does, keeps one), so this waits, with the GIL released, until they are idle
    (:func:`_wait_for_idle_threads`).  :func:`current` registers it when it creates the group.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to shut down cleanly
            pass
    _wait_for_idle_threads(_WORKER_THREADS, EXIT_IDLE_WAIT_S)


def _thread_states(names) -> list[str]:
    """Scheduler states (``"R"``, ``"S"``, ...) of this process's threads named one of ``names``
    (from ``/proc``; empty where there is none, or no ``/proc``)."""
    states = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return states
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() not in names:
                    continue
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        states.append(stat[stat.rindex(")") + 2])
    return states


def _wait_for_idle_threads(names, timeout_s: float, poll_s: float = 0.01, quiet_polls: int = 3) -> bool:
    """Sleep (GIL released) until every thread named one of ``names`` has been asleep for ``quiet_polls``
    polls in a row, or ``timeout_s`` passed; ``True`` when they are idle (or there are none).

    A thread releasing finished work is running, or asleep only for as long as the GIL is taken, which
    it gets while this sleeps; a run of quiet polls means it is waiting for new work.
    """
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while True:
        states = _thread_states(names)
        if not states:
            return True
        quiet = quiet + 1 if all(state == "S" for state in states) else 0
        if quiet >= quiet_polls:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def _timeout(timeout_s: float | None, backend: str) -> float:
    """The collective timeout (:func:`~hybridpgm.train.distributed_checks.collective_timeout_s`)."""
    return collective_timeout_s(timeout_s, backend, DEFAULT_TIMEOUT_S)
