"""SIGTERM / SIGINT to a ``hybridpgm train`` process: the step reached is saved, and
``--resume`` finishes bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import hybridpgm
from hybridpgm.train import load_checkpoint

TINY = ["train", "vae", "--dataset", "digits", "--epochs", "3", "--batch-size", "32", "--hidden", "16",
        "--latent-dim", "2", "--eval-samples", "10", "--eval-size", "20", "--no-progress", "--checkpoint-every", "5",
        "--device", "cpu", "--seed", "3"]


def _cli(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "hybridpgm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


@pytest.mark.slow  # three training processes
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_cli_saves_the_step_reached_and_resume_is_bit_identical(tmp_path, signum):
    out = tmp_path / "run"
    proc = _cli([*TINY, "--out", str(out)])
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first periodic checkpoint (step 5) says training runs
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    found = re.findall(rf"interrupted by {name} at step (\d+); checkpoint written to", err)
    assert len(found) == 1, err
    step = int(found[0])
    assert step >= 5 and load_checkpoint(checkpoint)["step"] == step
    assert "--resume" in err

    resumed = _cli([*TINY, "--out", str(out), "--resume"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"at step {step}" in err  # resuming says so
    _assert_equals_an_uninterrupted_run(out, tmp_path / "whole")


@pytest.mark.slow  # three training processes
def test_a_requeued_job_continues_with_the_same_command_line(tmp_path):
    """A scheduler's requeue (SLURM ``--requeue``, a Kubernetes Job's restart) runs the same command again.
    Before, no command did both: without ``--resume`` the requeue was refused (exit 2, the checkpoint exists),
    and the interruption line told the user to change the command."""
    out = tmp_path / "run"
    job = [*TINY, "--out", str(out), "--resume", "auto"]
    proc = _cli(job)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "hybridpgm: interrupted; run the same command to continue"
    step = load_checkpoint(checkpoint)["step"]
    requeued = _cli(job)  # the same argv
    _, err = requeued.communicate(timeout=300)
    assert requeued.returncode == 0, err
    assert f"at step {step}" in err
    _assert_equals_an_uninterrupted_run(out, tmp_path / "whole")


def _assert_equals_an_uninterrupted_run(out, whole_out):
    """The model the interrupted-and-continued run in ``out`` wrote equals, bit for bit, the one of a run of the
    same command without interruption (written to ``whole_out``)."""
    whole = _cli([*TINY, "--out", str(whole_out)])
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    a = hybridpgm.load(out / "model.pt").state_dict()
    b = hybridpgm.load(whole_out / "model.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
