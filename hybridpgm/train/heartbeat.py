"""Heartbeats that name the rank which stopped progressing in a multi-process run.

When one rank of a data-parallel job freezes (SIGSTOP, a hung file system, a
deadlock), the others wait in their next collective until its timeout, and the
backend's error blames the rank that noticed (``Timed out waiting ... recv``).
To name the culprit, every rank runs a :class:`Heartbeat`: a daemon thread
that writes, every ``interval`` seconds, the rank's step, what it is doing
(computing, or waiting in which collective) and since when, to the process
group's key-value store (the ``TCPStore`` torchrun already runs).  When a
collective fails, :meth:`Heartbeat.diagnose` reads every rank's record and
names the ranks whose heartbeat went silent (stopped or dead) or which have
been computing for longer than the timeout while the others wait.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import torch.distributed as dist

from hybridpgm.errors import CollectiveTimeoutError, HybridPGMError

__all__ = ["Heartbeat", "beating", "default_store", "explain_failure"]

_runs = 0  # fit calls so far in this process: every rank counts the same, so keys of one run match


def default_store() -> Any:
    """The default process group's store, or ``None`` where it cannot be had."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # private API: diagnosis degrades to "unknown", training is unaffected
        return None


class Heartbeat:
    """Publish this rank's progress; read everyone's after a failure.

    :param store: a ``torch.distributed.Store`` shared by the ranks.
    :param rank: this process's rank.
    :param world_size: number of ranks.
    :param timeout_s: the collective timeout; the beat interval is a fifth of
        it (between 0.2 s and 10 s) and a rank silent for three intervals is
        reported as stopped.
    :param run: names this run's keys in the store; by default the number of
        heartbeats this process has made, which matches across ranks because
        every rank calls ``fit`` the same number of times.
    """

    def __init__(self, store: Any, rank: int, world_size: int, timeout_s: float, run: str | None = None):
        global _runs
        _runs += 1
        self.store, self.rank, self.world_size, self.timeout_s = store, rank, world_size, float(timeout_s)
        self.interval = min(max(self.timeout_s / 5, 0.2), 10.0)
        self._prefix = f"hybridpgm/heartbeat/{_runs if run is None else run}/"
        self.step, self.phase, self.since = 0, "starting", time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- writing ---------------------------------------------------------------------------------------------------
    def _beat(self) -> None:
        payload = f"{self.step}|{self.phase}|{self.since!r}|{time.time()!r}"
        self.store.set(self._prefix + str(self.rank), payload)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._beat()
            except Exception:  # the store went away (shutdown): nothing left to report to
                return
            self._stop.wait(self.interval)

    def start(self) -> "Heartbeat":
        self._beat()
        self._thread = threading.Thread(target=self._run, name=f"hybridpgm-heartbeat-{self.rank}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval)

    def progress(self, step: int) -> None:
        """Record that this rank started step ``step`` (0-based) and is computing."""
        self.step, self.phase, self.since = step, "computing", time.time()

    @contextlib.contextmanager
    def waiting(self, collective: str) -> Iterator[None]:
        """Mark the time spent in a collective (restores *computing* after)."""
        self.phase, self.since = f"waiting in {collective}", time.time()
        try:
            yield
        finally:
            self.phase, self.since = "computing", time.time()

    # -- reading ---------------------------------------------------------------------------------------------------
    def records(self) -> dict[int, tuple[int, str, float, float] | None]:
        """rank -> (step, phase, since, last beat), ``None`` for a rank never heard of."""
        out: dict[int, tuple[int, str, float, float] | None] = {}
        for rank in range(self.world_size):
            key = self._prefix + str(rank)
            try:
                if not self.store.check([key]):
                    out[rank] = None
                    continue
                step, phase, since, beat = self.store.get(key).decode().split("|")
                out[rank] = (int(step), phase, float(since), float(beat))
            except Exception:
                out[rank] = None
        return out

    def diagnose(self) -> tuple[list[int], str]:
        """The ranks that stopped progressing and a report of every rank."""
        now = time.time()
        stale_after = 3 * self.interval
        culprits, lines = [], []
        for rank, record in self.records().items():
            if record is None:
                culprits.append(rank)
                lines.append(f"rank {rank}: no heartbeat at all (never started or died at once)")
                continue
            step, phase, since, beat = record
            silent, busy = now - beat, now - since
            if rank != self.rank and silent > stale_after:
                culprits.append(rank)
                lines.append(self._stopped(rank, record, silent, stale_after))
            elif phase == "computing" and busy > self.timeout_s:
                culprits.append(rank)
                lines.append(f"rank {rank}: alive but computing step {step + 1} for {busy:.1f} s without reaching "
                             "the next collective")
            else:
                lines.append(f"rank {rank}: {phase} in step {step + 1} for {busy:.1f} s")
        return culprits, "; ".join(lines)

    def _stopped(self, rank: int, record: tuple, silent: float, stale_after: float) -> str:
        """The report of a rank whose heartbeat is stale: which record, since when, and what to do."""
        step, phase, since, beat = record
        return (f"rank {rank}: STOPPED -- no heartbeat for {silent:.1f} s: its record in the store "
                f"('{self._prefix}{rank}') was last written at {_utc(beat)}, stale past {stale_after:.1f} s (3 beats "
                f"of {self.interval:.1f} s); its last beat said: {phase} in step {step + 1} since {_utc(since)}. "
                f"Rank {rank}'s process is stopped (SIGSTOP, a debugger), frozen (a hung file system, a deadlock) or "
                f"dead (killed, out of memory): read rank {rank}'s own output and its host's kernel log (the OOM "
                f"killer), dump its stack if it still runs (py-spy dump --pid PID), then stop the job and rerun it "
                f"with the same checkpoint= (fit resumes from it, as the CLI does with --resume)")


def _utc(t: float) -> str:
    """A wall-clock time (seconds since the epoch) as ``2026-12-07 15:40:12.3 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 10)} UTC"


@contextlib.contextmanager
def beating(context: Any) -> Iterator[Heartbeat | None]:
    """The heartbeat of a run, for the length of a ``with`` block.

    On several ranks with a store (:func:`default_store`), a started :class:`Heartbeat` published as
    ``context.heartbeat`` (the collectives mark their waits on it); else ``None``.  However the block ends
    -- a return, an exception, a :class:`KeyboardInterrupt` -- the beating thread is stopped and
    ``context.heartbeat`` reset to ``None``, so a failed ``fit`` leaves no thread behind.

    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext` (``world_size``,
        ``rank``, ``timeout_s`` and the ``heartbeat`` attribute it sets).
    """
    store = default_store() if context.world_size > 1 else None
    if store is None:
        yield None
        return
    heartbeat = Heartbeat(store, context.rank, context.world_size, context.timeout_s or 300.0)
    try:
        context.heartbeat = heartbeat.start()
        yield heartbeat
    finally:
        heartbeat.stop()  # idempotent: fit stops it earlier, when its steps end
        context.heartbeat = None


def explain_failure(error: BaseException, heartbeat: Heartbeat | None, rank: int, timeout_s: float | None,
                    step: int) -> BaseException:
    """A :class:`~hybridpgm.errors.CollectiveTimeoutError` naming the ranks that
    stopped, for an ``error`` raised by a collective in step ``step`` (0-based);
    ``error`` itself when it is no collective's or there is no heartbeat."""
    text = str(error)
    if heartbeat is None or isinstance(error, HybridPGMError) or not (
            isinstance(error, dist.DistError) or "gloo" in text.lower() or "timed out" in text.lower()):
        return error
    try:
        heartbeat._beat()  # this rank's own record as of now, not of its last beat
    except Exception:  # the store went away: the others' records may still be read
        pass
    ranks, report = heartbeat.diagnose()
    named = ", ".join(f"rank {r}" for r in ranks) if ranks else "no rank could be named from the heartbeats"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    closed = any(word in text.lower() for word in _CLOSED)
    cause = ("another rank closed its connection: it exited or crashed, and its own error is in its output"
             if closed else f"timeout {timeout_s:g} s")
    return CollectiveTimeoutError(f"rank {rank}: a collective failed in step {step + 1} ({cause}): {first}. "
                                  f"Stopped progressing: {named}. Heartbeats: {report}", ranks=ranks)


#: what gloo and NCCL say when a peer's end of a connection went away (not a timeout)
_CLOSED = ("connection closed", "closed by peer", "reset by peer", "broken pipe", "connection refused")
