"""Data parallelism with 2 CPU processes (gloo), launched with torchrun by the tests.

A run with 2 ranks of batch B must equal one process with batch 2B: the ranks'
shards of an epoch interleave one permutation, so the union of their step-s
batches is the single process's step-s batch, and gradients of intensive
losses average to the union's gradient.  The VAE reads its guide noise from
the data (common random numbers) so that both runs draw the same latents.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridpgm.train import load_checkpoint
from tests.train import ddp_worker

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "ddp_worker.py"


def torchrun(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", HYBRIDPGM_DIST_TIMEOUT="60", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def assert_same(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=atol, msg=f"parameter {k}")


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "all.pt"
    proc = torchrun("all", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("mode", ["vae", "two_player", "accumulate"])
def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(two_rank_results, mode):
    single = ddp_worker.run(mode, 16)
    assert_same(two_rank_results[mode], single)


def test_distributed_checkpoint_resumes_on_two_or_one_process(tmp_path):
    ckpt = tmp_path / "ddp.pt"
    proc = torchrun("vae_part", tmp_path / "part.pt", ckpt)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = load_checkpoint(ckpt)
    assert saved["step"] == 3 and saved["world_size"] == 2 and len(saved["rng"]) == 2
    uninterrupted = ddp_worker.run("vae", 16)
    # on one process with the same global batch
    single_ckpt = tmp_path / "single.pt"
    single_ckpt.write_bytes(ckpt.read_bytes())
    assert_same(ddp_worker.run("vae", 16, checkpoint=single_ckpt), uninterrupted)
    # on two processes again
    proc = torchrun("vae_resume", tmp_path / "resumed.pt", ckpt)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_same(torch.load(tmp_path / "resumed.pt", weights_only=True)["vae"], uninterrupted)


def test_a_killed_rank_fails_the_job_and_the_checkpoint_resumes(tmp_path):
    ckpt = tmp_path / "killed.pt"
    proc = torchrun("vae_kill", tmp_path / "never.pt", ckpt, timeout=240)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "rank" in log and "1" in log and "-9" in log, log[-3000:]
    assert load_checkpoint(ckpt)["step"] == 4  # written after step 4; rank 1 died in step 5
    proc = torchrun("vae_resume", tmp_path / "resumed.pt", ckpt)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_same(torch.load(tmp_path / "resumed.pt", weights_only=True)["vae"], ddp_worker.run("vae", 16))


def test_ranks_that_disagree_on_the_configuration_fail_with_a_named_error(tmp_path):
    proc = torchrun("mismatch", tmp_path / "m.pt", timeout=240)
    assert proc.returncode != 0
    assert "ranks disagree on the configuration" in proc.stderr and "rank 1 has" in proc.stderr


def test_cli_under_torchrun_writes_one_report(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "report"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "hybridpgm", "train", "vae", "--dataset", "digits", "--accumulate", "4", "--epochs", "1",
               "--latent-dim", "4", "--hidden", "32", "--eval-samples", "10", "--eval-size", "50", "--out", str(out),
               "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["accumulate"] == 4
    assert metrics["steps"] == 5  # 1257 examples -> 628 per rank -> 5 batches of 128
    assert proc.stdout.count('"test_log_likelihood"') == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png", "metrics.json",
                                                      "reconstructions.png", "samples.png"]
