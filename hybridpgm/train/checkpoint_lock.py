"""The advisory lock :func:`~hybridpgm.fit` holds beside its checkpoint for the whole run.

Two runs of one checkpoint at once (a requeued job started while the preempted one still writes in its grace
period, a job launched twice) would both train and rename over the same file, so that the checkpoint on disk
goes back and forth between their steps.  ``fit`` therefore holds ``.NAME.lock`` beside ``NAME`` from before
it reads (or, with ``overwrite``, removes) the checkpoint until it returns or raises (an exception, a stop
signal's :class:`~hybridpgm.errors.TrainingInterrupted`): a second run is refused with a
:class:`~hybridpgm.errors.CheckpointError` naming the lock file and the holder's host and process id, which the
lock file records.  Under ``torchrun`` only rank 0, the rank that writes the checkpoint, takes it, and every rank
raises rank 0's refusal.

The lock is :func:`fcntl.flock` (``LOCK_EX | LOCK_NB``), taken once per run: no cost per step.  The kernel drops
it when the holder ends, however it ends (``SIGKILL`` too), so a lock file left by a killed run is simply taken
over; so is one whose lock a forked child of a dead holder still keeps (the recorded holder is of this host and
its process is gone: the file is replaced).  The holder removes the file when it lets go; a run that opened the
file just before then finds, once it holds the lock, that the path names another file, and starts again.

Limits: ``flock`` locks one host's processes against each other, and on Linux NFS clients (since 2.6.12) also
across hosts through NFS's byte-range locks (NFSv4, or NFSv3 with the server's ``lockd``; a ``nolock`` or
``local_lock=flock`` mount locks one host only); where the file system has no locks (``ENOLCK``: NFSv3 without
``lockd``, some FUSE file systems) or the platform has no :mod:`fcntl` (Windows), ``fit`` runs without the lock,
as before.  A checkpoint whose folder does not exist yet is not locked (``fit`` creates no folder before its
first write, and no checkpoint is there to protect), so two fresh runs started together into a new folder are not
refused.  A process that keeps the lock on another host is never taken over.

Reference: ``flock(2)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from hybridpgm.errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows: no lock (see the module docstring)
    fcntl = None

__all__ = ["checkpoint_lock", "lock_path"]

#: errors of a file system that cannot lock (the run goes on without the lock)
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})


def lock_path(checkpoint: str | os.PathLike) -> Path:
    """The lock file of ``checkpoint``: ``.NAME.lock`` in its folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f".{checkpoint.name}.lock"


def _holder(handle: int) -> tuple[str | None, int | None]:
    """The host and process id a lock file records (``None`` where it records none yet)."""
    try:
        text = os.pread(handle, 512, 0).decode("utf-8", "replace")
    except OSError:
        return None, None
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    pid = fields.get("pid", "")
    return fields.get("host"), int(pid) if pid.isdigit() else None


def _ended(host: str | None, pid: int | None) -> bool:
    """Whether the recorded holder is known to have ended: a process of this host that no longer exists."""
    if host != socket.gethostname() or pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):  # another user's process (EPERM): alive
        return False
    return False


def _refusal(path: Path, host: str | None, pid: int | None) -> CheckpointError:
    checkpoint = path.parent / path.name[1:-len(".lock")]
    who = ("a process that has not recorded itself yet" if pid is None else
           "this process (another fit of this checkpoint runs in it)" if pid == os.getpid()
           and host == socket.gethostname() else f"process {pid} on host {host!r}")
    return CheckpointError(f"checkpoint {str(checkpoint)!r} is in use by another run: its lock {str(path)!r} is "
                           f"held by {who}; wait for that run to end (or stop it), or pass another checkpoint path")


def _acquire(path: Path) -> int | None:
    """Take the lock ``path``: the open descriptor that holds it, or ``None`` where the platform or the file
    system has no locks.

    :raises CheckpointError: another live process holds it."""
    if fcntl is None:
        return None
    for _ in range(5):  # a holder letting go, or a dead holder's file replaced, between the steps below
        if not path.parent.is_dir():  # a fresh run's folder, created at its first write: nothing to guard yet
            return None
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # a folder that cannot be written: open_checkpoint names it next
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            host, pid = _holder(handle)
            os.close(handle)
            if _ended(host, pid):  # its lock survives in a forked child: replace the file
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            raise _refusal(path, host, pid) from None
        except OSError as error:
            os.close(handle)
            if error.errno in _NO_LOCKS:
                return None
            raise
        try:
            current = os.stat(path)
            ours = os.fstat(handle)
            same = (current.st_dev, current.st_ino) == (ours.st_dev, ours.st_ino)
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed the file as it let go: lock the one at the path now
            os.close(handle)
            continue
        record = f"host={socket.gethostname()} pid={os.getpid()}\n".encode()
        with contextlib.suppress(OSError):  # a full disk: held all the same, the refusal then names no holder
            os.ftruncate(handle, 0)
            os.pwrite(handle, record, 0)
        return handle
    raise _refusal(path, None, None)


def _release(path: Path, handle: int | None) -> None:
    """Remove the lock file, then let go of the lock (closing the descriptor)."""
    if handle is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(handle)


@contextlib.contextmanager
def checkpoint_lock(checkpoint: str | os.PathLike | None, context: Any) -> Iterator[None]:
    """Hold the lock of ``checkpoint`` (nothing for ``None``) on rank 0 while the block runs, and let go of it
    however the block ends.

    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext`; under ``torchrun``
        every rank enters (rank 0's refusal is broadcast, one collective per run).
    :raises CheckpointError: another run holds the lock (naming the lock file, the holder's host and process
        id); on the other ranks, rank 0's refusal.
    """
    if checkpoint is None:
        yield
        return
    from hybridpgm.train.run_start import checkpoint_path

    path = lock_path(checkpoint_path(checkpoint))
    handle, failure = None, None
    if context.is_main:
        try:
            handle = _acquire(path)
        except CheckpointError as error:
            if context.world_size == 1:
                raise
            failure = str(error)
    if context.world_size > 1:
        failure = context.broadcast_object(failure)
        if failure is not None:
            _release(path, handle)
            raise CheckpointError(failure if context.is_main else f"rank 0 refused the checkpoint: {failure}")
    try:
        yield
    finally:
        _release(path, handle)
