"""The lock ``fit`` holds beside its checkpoint for the run (hybridpgm/train/checkpoint_lock.py)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from tests.train.helpers import LinearRegression, regression_data

pytest.importorskip("fcntl")  # POSIX: Windows runs without the lock (see the module docstring)

WORKER = Path(__file__).with_name("lock_holder_worker.py")


def _holder(checkpoint: Path, folder: Path, how: str) -> subprocess.Popen:
    """A fit of ``checkpoint`` in another process, started once its first step is done."""
    proc = subprocess.Popen([sys.executable, str(WORKER), str(checkpoint), str(folder), how],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 300
    while not (folder / "started").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc


def _fit(checkpoint: Path, **kwargs):
    return fit(LinearRegression(), regression_data(), checkpoint=checkpoint, checkpoint_every=1, epochs=2,
               batch_size=16, progress=False, seed=0, **kwargs)


def test_a_second_run_of_a_checkpoint_in_use_is_refused_naming_the_lock_host_and_pid(tmp_path):
    """Before, two runs of one checkpoint both trained and renamed over it, so the step on disk went back and
    forth (9 -> 8, 14 -> 12 ...)."""
    checkpoint = tmp_path / "run.pt"
    proc = _holder(checkpoint, tmp_path, "wait")
    try:
        assert proc.poll() is None, proc.communicate()[0]
        before = checkpoint.read_bytes() if checkpoint.exists() else None
        with pytest.raises(CheckpointError) as refused:
            _fit(checkpoint)
        message = str(refused.value)
        assert str(tmp_path / ".run.pt.lock") in message and f"process {proc.pid} " in message
        assert repr(socket.gethostname()) in message and str(checkpoint) in message
        assert (checkpoint.read_bytes() if checkpoint.exists() else None) == before  # untouched
        for _ in range(2):  # a refusal holds nothing: refused again while the holder runs
            with pytest.raises(CheckpointError, match="in use by another run"):
                _fit(checkpoint, resume="require")
    finally:
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert not (tmp_path / ".run.pt.lock").exists()  # the holder removed it as it let go
    assert _fit(checkpoint).steps == 8  # now free: resumes the finished run


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    """SIGKILL leaves the lock file; the kernel dropped the lock with the process, so the next run takes it."""
    checkpoint = tmp_path / "run.pt"
    proc = _holder(checkpoint, tmp_path, "kill")
    proc.communicate(timeout=300)
    assert proc.returncode == -9
    assert (tmp_path / ".run.pt.lock").exists()  # what the killed run left
    assert _fit(checkpoint).steps == 8
    assert not (tmp_path / ".run.pt.lock").exists()


def test_a_lock_a_dead_holders_fork_keeps_is_taken_over(tmp_path):
    """The recorded holder, of this host, is gone, but the lock lives on in a process it forked (which shares
    the descriptor): the file is replaced rather than the run refused."""
    lock = tmp_path / ".run.pt.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    keeper = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        f"os.write(fd, b'host={socket.gethostname()} pid={int(dead.stdout)}\\n')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert keeper.stdout.readline().strip() == "held"
        assert _fit(tmp_path / "run.pt").steps == 8
    finally:
        keeper.communicate("", timeout=60)
    assert not lock.exists()


def test_the_lock_is_held_for_the_run_and_released_however_it_ends(tmp_path):
    """Held from before the checkpoint is read to the end of fit (here seen by a callback), and let go after an
    exception and after a stop signal too."""
    import signal

    from hybridpgm.errors import TrainingInterrupted

    checkpoint, lock = tmp_path / "run.pt", tmp_path / ".run.pt.lock"
    seen = []

    class Look:
        def __init__(self, then=None):
            self.then = then

        def on_step_end(self, info):
            seen.append(lock.read_text())
            if self.then == "raise":
                raise RuntimeError("callback failed")
            if self.then == "signal":
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RuntimeError, match="callback failed"):
        _fit(checkpoint, callbacks=[Look("raise")])
    assert seen == [f"host={socket.gethostname()} pid={os.getpid()}\n"] and not lock.exists()
    with pytest.raises(TrainingInterrupted):
        _fit(checkpoint, callbacks=[Look("signal")], resume="auto")
    assert not lock.exists()
    assert _fit(checkpoint, callbacks=[Look()]).steps == 8 and not lock.exists()


def test_a_file_system_without_locks_runs_without_the_lock(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert _fit(tmp_path / "run.pt").steps == 8


def test_only_rank_0_locks_and_every_rank_raises_its_refusal(tmp_path):
    """Under torchrun rank 0 writes the checkpoint (docs/scaling.md), so only it takes the lock; its refusal
    reaches every rank through one broadcast."""
    from hybridpgm.train.checkpoint_lock import checkpoint_lock, lock_path

    checkpoint = tmp_path / "run.pt"
    other = SimpleNamespace(is_main=False, world_size=2, broadcast_object=lambda obj: obj)
    with checkpoint_lock(checkpoint, other):
        assert not lock_path(checkpoint).exists()
    main = SimpleNamespace(is_main=True, world_size=2, broadcast_object=lambda obj: obj)
    with checkpoint_lock(checkpoint, main):
        assert lock_path(checkpoint).exists()
        refused = SimpleNamespace(is_main=False, world_size=2, broadcast_object=lambda obj: "held elsewhere")
        with pytest.raises(CheckpointError, match="rank 0 refused the checkpoint: held elsewhere"):
            with checkpoint_lock(checkpoint, refused):
                pass
        with pytest.raises(CheckpointError, match="this process"):
            with checkpoint_lock(checkpoint, main):
                pass
    assert not lock_path(checkpoint).exists()
