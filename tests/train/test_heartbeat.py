"""Naming the rank that stopped (hybridpgm/train/heartbeat.py)."""

import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch.distributed as dist

from hybridpgm.errors import CollectiveTimeoutError
from hybridpgm.train import heartbeat as heartbeat_module
from hybridpgm.train.heartbeat import Heartbeat, beating, explain_failure

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "ddp_worker.py"


def test_a_silent_rank_is_named_and_a_waiting_rank_is_not():
    store = dist.HashStore()
    beats = [Heartbeat(store, r, 3, timeout_s=1.0, run="a") for r in range(3)]
    assert beats[0].interval == pytest.approx(0.2)
    for beat in beats:
        beat.progress(4)
        beat._beat()
    time.sleep(3 * beats[0].interval + 0.2)  # rank 1 falls silent; ranks 0 and 2 keep beating while they wait
    with beats[0].waiting("all_reduce"):
        beats[0]._beat()
        beats[2]._beat()
        ranks, report = beats[0].diagnose()
    assert ranks == [1]
    assert "rank 1: STOPPED -- no heartbeat for" in report and "its last beat said: computing in step 5" in report
    assert "rank 0: waiting in all_reduce in step 5" in report


def test_a_stale_heartbeat_says_which_record_since_when_and_what_to_do():
    """Session 38: "no heartbeat for 12 s (process stopped, frozen or dead)" named neither the stale record, nor the
    time of its last beat, nor a remedy."""
    store = dist.HashStore()
    beats = [Heartbeat(store, r, 2, timeout_s=1.0, run="stale") for r in range(2)]
    beats[1].progress(6)
    beats[1].since = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    beats[1]._beat()
    store.set(beats[1]._prefix + "1", f"6|computing|{beats[1].since!r}|{1_700_000_004.5!r}")  # its last beat
    beats[0]._beat()
    ranks, report = beats[0].diagnose()
    assert ranks == [1]
    line = report[report.index("rank 1: "):]
    assert line.startswith("rank 1: STOPPED -- no heartbeat for ")
    assert "its record in the store ('hybridpgm/heartbeat/stale/1') was last written at 2023-11-14 22:13:24.5 UTC" \
        in line
    assert "stale past 0.6 s (3 beats of 0.2 s)" in line
    assert "its last beat said: computing in step 7 since 2023-11-14 22:13:20.0 UTC" in line
    assert "read rank 1's own output" in line and "rerun it with the same checkpoint=" in line and "--resume" in line


def test_a_rank_computing_past_the_timeout_is_named_and_one_never_heard_of_too():
    store = dist.HashStore()
    beats = [Heartbeat(store, r, 3, timeout_s=0.5, run="b") for r in range(2)] + [None]
    beats[1].progress(2)
    beats[1].since -= 10  # computing step 3 for 10 s
    beats[0].start()
    beats[1].start()
    try:
        ranks, report = beats[0].diagnose()
    finally:
        beats[0].stop()
        beats[1].stop()
    assert ranks == [1, 2]
    assert "rank 1: alive but computing step 3 for 10." in report and "rank 2: no heartbeat at all" in report


def test_beating_stops_its_thread_and_unpublishes_it_however_the_block_ends(monkeypatch):
    store = dist.HashStore()
    monkeypatch.setattr(heartbeat_module, "default_store", lambda: store)
    context = types.SimpleNamespace(world_size=2, rank=1, timeout_s=1.0, heartbeat=None)
    with pytest.raises(KeyboardInterrupt):
        with beating(context) as beat:
            assert context.heartbeat is beat and beat._thread.is_alive()
            assert store.get(beat._prefix + "1").decode().startswith("0|starting|")
            raise KeyboardInterrupt  # a Ctrl-C in a callback's on_fit_start
    assert context.heartbeat is None and not beat._thread.is_alive()
    context.world_size = 1  # one process: no heartbeat at all
    with beating(context) as beat:
        assert beat is None and context.heartbeat is None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh interpreters: about 30 s on 2 busy cores, of which 3 s is the timeout
def test_a_sigstopped_rank_is_named_within_the_configured_timeout(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()))
    procs = [subprocess.Popen([sys.executable, str(WORKER), "stall", str(tmp_path / "never.pt"), "3"],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        _, err = procs[0].communicate(timeout=300)
    finally:
        for proc in procs:
            proc.kill()  # rank 1 is stopped: SIGKILL ends it anyway
            proc.wait()
    assert procs[0].returncode != 0
    assert "CollectiveTimeoutError: rank 0: a collective failed in step 3 (timeout 3 s)" in err, err[-3000:]
    assert "Stopped progressing: rank 1." in err and "rank 1: STOPPED -- no heartbeat for" in err
    assert procs[1].returncode == -signal.SIGKILL


def test_explain_failure_names_the_stopped_rank_for_a_collective_error_only():
    store = dist.HashStore()
    beats = [Heartbeat(store, r, 2, timeout_s=1.0, run="c") for r in range(2)]
    beats[0]._beat()  # rank 1 never beat
    timeout = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 1000ms for recv operation"
                           "\nmore")
    error = explain_failure(timeout, beats[0], rank=0, timeout_s=1.0, step=4)
    assert isinstance(error, CollectiveTimeoutError) and error.ranks == [1]
    assert str(error).startswith("rank 0: a collective failed in step 5 (timeout 1 s): [gloo/transport/tcp/"
                                 "unbound_buffer.cc:78] Timed out waiting 1000ms for recv operation. "
                                 "Stopped progressing: rank 1. Heartbeats: ")
    unrelated = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    assert explain_failure(unrelated, beats[0], rank=0, timeout_s=1.0, step=4) is unrelated
    assert explain_failure(timeout, None, rank=0, timeout_s=1.0, step=4) is timeout


def test_a_peer_that_closed_its_connection_is_not_called_a_timeout():
    """Before, a rank whose peer crashed after 2.7 s reported '(timeout 60 s)' and its own record as of its
    last beat (step 1 while it was in step 3)."""
    store = dist.HashStore()
    beats = [Heartbeat(store, r, 2, timeout_s=60.0, run="closed") for r in range(2)]
    for beat in beats:
        beat._beat()
    beats[0].progress(2)  # rank 0 moved on to step 3 since its last beat
    closed = RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500")
    error = explain_failure(closed, beats[0], rank=0, timeout_s=60.0, step=2)
    assert isinstance(error, CollectiveTimeoutError)
    assert str(error).startswith("rank 0: a collective failed in step 3 (another rank closed its connection: it "
                                 "exited or crashed, and its own error is in its output): [gloo/transport/tcp/pair")
    assert "timeout 60" not in str(error) and "rank 0: computing in step 3" in str(error)
