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
from tests.train.helpers import LinearRegression


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


@pytest.mark.parametrize("mode", ["vae", "two_player", "accumulate", "unused", "lbfgs", "bayes_regression"])
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


def test_nvil_running_statistics_pool_every_ranks_signals(tmp_path):
    """NVIL's running mean and variance on 2 ranks of batch 8 are those of one process of batch 16 (the ranks
    pool their signals in each update), and so are the parameters: float64, 3 steps, accumulate 1 and 2."""
    proc = torchrun("nvil", tmp_path / "nvil.pt")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = torch.load(tmp_path / "nvil.pt", weights_only=True)
    for key, accumulate in (("nvil", 1), ("nvil_acc", 2)):
        single = ddp_worker.nvil(16, accumulate)
        assert (single["baselines.var"] - 1.0).abs().min() > 0.1  # the statistics moved from their start
        assert ranks[key].keys() == single.keys()
        for name, value in single.items():
            torch.testing.assert_close(ranks[key][name], value, rtol=0.0, atol=1e-10, msg=f"{key}: {name}")


def test_each_rank_resumes_its_own_buffers_and_another_world_size_warns(tmp_path):
    ckpt = tmp_path / "pcd.pt"
    proc = torchrun("pcd_resume", tmp_path / "pcd", ckpt)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = [torch.load(tmp_path / f"pcd.rank{r}", weights_only=True) for r in (0, 1)]
    assert not torch.equal(runs[0]["full"]["chain_0"], runs[1]["full"]["chain_0"])  # the ranks' chains differ
    for rank, run in enumerate(runs):  # every rank, buffers and parameters, bit for bit
        for name, value in run["full"].items():
            assert torch.equal(run["resumed"][name], value), (rank, name)
    saved = load_checkpoint(ckpt)
    assert saved["world_size"] == 2 and len(saved["rank_states"]) == 2
    assert torch.equal(saved["rank_states"][1]["buffers"]["chain_0"], runs[1]["full"]["chain_0"])
    with pytest.warns(UserWarning, match=r"written by 2 ranks and this run has 1: .*'chain_0'.*lost"):
        ddp_worker.pcd(8, checkpoint=ckpt)  # one process, the same global batch: rank 0's chains, and a warning


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


def test_ranks_that_disagree_on_skip_nonfinite_fail_before_the_first_step(tmp_path):
    """A step's error path (whose gradient was not finite) holds a collective of its own: a rank that skipped
    the step instead would leave the others waiting in it, so the ranks must agree on skip_nonfinite."""
    proc = torchrun("mismatch_skip", tmp_path / "m.pt", timeout=240)
    assert proc.returncode != 0
    assert "ranks disagree on the configuration: skip_nonfinite: rank 0 has False, rank 1 has True" in proc.stderr


def test_cli_under_torchrun_writes_one_report(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "report"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "hybridpgm", "train", "vae", "--dataset", "digits", "--accumulate", "4", "--epochs", "1",
               "--latent-dim", "4", "--hidden", "32", "--batch-size", "128", "--eval-samples", "10",
               "--eval-size", "50", "--out", str(out), "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["accumulate"] == 4
    assert metrics["steps"] == 5  # 1257 examples -> 628 per rank -> 5 batches of 128
    assert proc.stdout.count('"test_log_likelihood"') == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png", "metrics.json", "model.pt",
                                                      "reconstructions.png", "samples.png"]


def test_a_rank_whose_data_is_fine_names_the_rank_whose_data_failed_or_diverged(tmp_path):
    proc = torchrun("bad_rank0", tmp_path / "bad", timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (check0, nan0, grad0, huge0), (check1, nan1, grad1, huge1) = [
        torch.load(tmp_path / f"bad.rank{r}", weights_only=True) for r in (0, 1)]
    assert check0[0] == "DataError" and "is impossible under the model: node 'b'" in check0[1]
    assert check1 == ("DataError", "the data of rank(s) [0] failed a check of the model at step 0 (player 'elbo'); "
                                   "see rank 0's error for the check and the row: this rank's (1 of 2) data passed; "
                                   "no update was applied")
    assert nan0[0] == "TrainingDivergedError" and "is nan (on rank 0 of 2, whose own loss is not finite)" in nan0[1]
    assert nan1[0] == "TrainingDivergedError" and nan1[1].startswith(
        "loss of player 'fit' is nan (the average over 2 ranks): the loss of rank(s) [0] is not finite, this rank's "
        "(1) is; see rank 0's error for its micro-batches at step 0; no update was applied")
    # the ranks of a non-finite gradient are asked on the error path, in a collective of its own, on every rank
    for (kind, message), tail in ((grad0, "; the gradient of rank(s) [1] is not finite, this rank's own (rank 0) is "
                                          "finite: see rank 1's error"),
                                  (grad1, " (on rank 1 of 2, whose own gradient is not finite)"),
                                  (huge0, " (each rank's own gradient is finite: their average over 2 ranks "
                                          "overflowed)"),
                                  (huge1, " (each rank's own gradient is finite: their average over 2 ranks "
                                          "overflowed)")):
        assert kind == "TrainingDivergedError"
        assert message.startswith("gradient of player 'fit' is not finite in ['weight'] (the loss, "), message
        assert f"is finite){tail} at step 0; no update was applied" in message, message


@pytest.mark.slow
def test_per_rank_initialisations_end_identical_and_equal_to_one_process(tmp_path):
    assert not torch.equal(LinearRegression(seed=0).module.weight, LinearRegression(seed=1).module.weight)
    out = tmp_path / "init.pt"
    proc = torchrun("per_rank_init", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0 = torch.load(f"{out}.rank0", weights_only=True)["x"]
    rank1 = torch.load(f"{out}.rank1", weights_only=True)["x"]
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # rank 0's weights were broadcast at the start
    assert_same(rank0, ddp_worker.run("accumulate", 16, init_seed=0))


@pytest.mark.slow
def test_a_per_rank_learning_rate_is_a_named_error_on_every_rank(tmp_path):
    proc = torchrun("per_rank_lr", tmp_path / "lr.pt", timeout=240)
    assert proc.returncode != 0
    message = "optimizers['fit']['param_groups'][0]['lr']: rank 0 has 0.05, rank 1 has 0.1"
    assert proc.stderr.count("ConfigError: ranks disagree on the configuration") == 2, proc.stderr[-4000:]
    assert proc.stderr.count(message) == 2


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    out, ckpt = tmp_path / "stop.pt", tmp_path / "stop_ckpt.pt"
    proc = torchrun("sigterm_rank1", out, ckpt, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stops = [torch.load(f"{out}.rank{r}", weights_only=True) for r in (0, 1)]
    assert stops[0] == stops[1] == {"step": 3, "signum": 15}
    assert load_checkpoint(ckpt)["step"] == 3
    assert proc.stderr.count("interrupted by SIGTERM at step 3") == 1  # rank 0 alone says it
