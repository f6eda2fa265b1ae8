"""Data parallelism with 2 CPU processes (gloo), launched with torchrun by the tests.

A run with 2 ranks of batch B must equal one process with batch 2B: the ranks'
shards of an epoch interleave one permutation, so the union of their step-s
batches is the single process's step-s batch, and gradients of intensive
losses average to the union's gradient.  The VAE reads its guide noise from
the data (common random numbers) so that both runs draw the same latents.
"""

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.distributed import DistributedContext, _thread_states, _wait_for_idle_threads, differences
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


# fast checks of the same logic, with the collectives faked in one process

def test_differences_name_every_leaf_path():
    a = {"lr": 0.1, "groups": [{"betas": [0.9, 0.99], "eps": 1e-8}], "x": 1}
    b = {"lr": 0.2, "groups": [{"betas": [0.9, 0.999], "eps": 1e-8}], "y": 2}
    assert differences(a, b) == [("lr", 0.1, 0.2), ("groups[0]['betas']", [0.9, 0.99], [0.9, 0.999]),
                                 ("x", 1, "<absent>"), ("y", "<absent>", 2)]
    assert differences(a, a) == []


def test_check_same_names_the_differing_setting_and_rank(monkeypatch):
    context = DistributedContext(rank=0, world_size=2)
    values = [{"optimizers": {"fit": {"lr": 0.05}}, "batch": 8}, {"optimizers": {"fit": {"lr": 0.1}}, "batch": 8}]
    monkeypatch.setattr(context, "gather_object", lambda value: values)
    with pytest.raises(ConfigError, match=r"ranks disagree on the configuration: optimizers\['fit'\]\['lr'\]: "
                                          r"rank 0 has 0.05, rank 1 has 0.1$"):
        context.check_same("configuration", values[0])


def test_gradient_all_reduce_leaves_no_gradient_where_no_rank_had_one(monkeypatch):
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 1)]
    params[0].grad = torch.tensor([1.0, 2.0])  # this rank reached only the first parameter
    other = torch.cat([torch.tensor([3.0, 4.0]), torch.tensor([5.0, 6.0, 7.0]), torch.zeros(1),  # the other rank's
                       torch.tensor([1.0]), torch.tensor([1.0, 1.0, 0.0])])  # grads, loss, then "had a gradient"

    def fake_all_reduce(flat):  # the sum with the other rank's bucket of the same layout
        assert flat.shape == other.shape
        flat += other

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    loss = DistributedContext(rank=0, world_size=2).all_reduce_gradients(params, extra=torch.tensor(3.0))
    assert loss.item() == 2.0
    assert torch.equal(params[0].grad, torch.tensor([2.0, 3.0]))
    assert torch.equal(params[1].grad, torch.tensor([2.5, 3.0, 3.5]))  # zeros here, the other rank's there
    assert params[2].grad is None  # no rank reached it: the optimizer must leave it alone


def test_gradient_all_reduce_of_identical_ranks_keeps_missing_gradients_missing(monkeypatch):
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.tensor([1.0, 2.0])
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flat: flat.mul_(2))  # both ranks alike
    DistributedContext(rank=0, world_size=2).all_reduce_gradients(params)
    assert torch.equal(params[0].grad, torch.tensor([1.0, 2.0])) and params[1].grad is None


def test_flags_in_rank_slots_tell_every_rank_whose_flag_is_set(monkeypatch):
    context = DistributedContext(rank=1, world_size=2)
    mine = context.in_rank_slots(torch.tensor([0.0, 1.0]))  # rank 1: check passed, loss not finite
    assert torch.equal(mine, torch.tensor([0.0, 0.0, 0.0, 1.0]))  # (flag, rank) row-major
    other = torch.tensor([2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])  # rank 0's: grad, loss, its check failed, had a grad
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda flat: flat.add_(other))
    params = [torch.nn.Parameter(torch.zeros(1))]
    params[0].grad = torch.tensor([4.0])
    extra = context.all_reduce_gradients(params, extra=torch.cat([torch.tensor([3.0]), mine]))
    assert torch.equal(extra, torch.tensor([2.0, 0.5, 0.0, 0.0, 0.5]))  # loss averaged; flags over W, still > 0
    assert torch.equal(params[0].grad, torch.tensor([3.0]))


def test_broadcast_module_state_copies_rank_zeros_parameters_and_buffers(monkeypatch):
    torch.manual_seed(0)
    source = torch.nn.BatchNorm1d(3)
    source.running_mean.normal_()
    source.weight.data.normal_()
    torch.manual_seed(1)
    mine = torch.nn.BatchNorm1d(3)
    buckets = iter([torch.cat([source.weight.reshape(-1), source.bias.reshape(-1), source.running_mean,
                               source.running_var]).detach(), source.num_batches_tracked.reshape(-1) + 5])

    def fake_broadcast(flat, src):  # what rank 0 would send, one bucket per dtype
        assert src == 0
        flat.copy_(next(buckets))

    monkeypatch.setattr(torch.distributed, "broadcast", fake_broadcast)
    DistributedContext(rank=1, world_size=2, device=torch.device("cpu")).broadcast_module_state(mine)
    for name, value in source.state_dict().items():
        expected = value + 5 if name == "num_batches_tracked" else value
        assert torch.equal(mine.state_dict()[name], expected), name


def _named_thread(name, work, done):
    """A thread that names itself ``name`` for ``/proc`` (Linux ``prctl``), runs ``work`` and then waits."""

    def body():
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
        work()
        done.wait()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread states are read from /proc (Linux)")
def test_exit_wait_returns_once_the_named_threads_are_idle_and_not_before():
    done, spin_until = threading.Event(), time.monotonic() + 0.6
    a = torch.randn(300, 300)

    def busy():  # a backend thread releasing work: running, with the GIL free most of the time
        while time.monotonic() < spin_until:
            a @ a

    thread = _named_thread("hpgm_test_busy", busy, done)
    try:
        time.sleep(0.05)
        assert _thread_states(("hpgm_test_busy",)), "the named thread is visible in /proc"
        assert not _wait_for_idle_threads(("hpgm_test_busy",), timeout_s=0.1)  # still busy: times out
        assert _wait_for_idle_threads(("hpgm_test_busy",), timeout_s=5.0)
        assert time.monotonic() >= spin_until  # idle only after its work ended
    finally:
        done.set()
        thread.join()
    assert _wait_for_idle_threads(("no_such_thread",), timeout_s=0.0)  # none: nothing to wait for


@pytest.mark.parametrize("frozen", [True, False])
def test_a_frozen_player_all_reduces_its_loss_alone_not_zeros_for_its_parameters(monkeypatch, frozen):
    """Found by a review: on several ranks a player whose parameters are all frozen sent a bucket of zeros the
    size of its parameters with every step's all-reduce; now only the loss and the per-rank flags travel.
    The trainable case is the guard that the bucket still carries every parameter then."""
    from hybridpgm.train.player_step import Player

    weight = torch.nn.Parameter(torch.ones(1000), requires_grad=not frozen)

    class Objective:
        def loss(self, player, batch):
            return (batch * weight).sum()

    sizes = []

    def fake_all_reduce(flat):  # two identical ranks
        sizes.append(flat.numel())
        flat.mul_(2)

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    player = Player("fit", [weight], torch.optim.SGD([weight], lr=0.1))
    loss = player.update(Objective(), [(torch.full((1000,), 0.5), 1.0)], step=0,
                         context=DistributedContext(rank=0, world_size=2), precision=None,
                         device=torch.device("cpu"), clip_grad_norm=None)
    assert loss == 500.0
    # the parameters' gradients and their had-a-gradient flags (trainable only), the loss, 2 flags in 2 rank slots
    assert sizes == ([1 + 4] if frozen else [1000 + 1 + 4 + 1])
    assert torch.equal(weight.detach(), torch.ones(1000) if frozen else torch.full((1000,), 0.95))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_non_finite_gradient_on_one_rank_is_named_on_every_rank(monkeypatch, rank):
    """Carried from earlier reviews: a gradient that was not finite on one rank only (the loss finite everywhere)
    reached every rank as a non-finite average with a bare message; each rank now says whose gradient it was.
    Rank 1's own gradient is NaN in its first entry; this process plays ``rank`` and the other rank is faked:
    the step's all-reduce, then (the averaged gradient not finite) the error path's all-reduce of the ranks'
    gradient flags."""
    from hybridpgm.errors import TrainingDivergedError
    from hybridpgm.train.player_step import Player

    weight = torch.nn.Parameter(torch.ones(3))
    nan = float("nan")

    class Objective:
        def loss(self, player, batch):  # finite, but torch.where's gradient of a NaN entry is NaN
            return torch.where(batch.isfinite(), batch * weight, 0.0).sum()

    no_faults = [0.0, 0.0, 0.0, 0.0]  # (check, loss) flags x (rank 0, rank 1), flag-major
    other = {0: [nan, 1.0, 1.0, 2.0, *no_faults, 1.0],  # rank 1's bucket, seen from rank 0
             1: [1.0, 1.0, 1.0, 3.0, *no_faults, 1.0]}[rank]  # rank 0's bucket, seen from rank 1
    other_gradient_flag = {0: [0.0, 1.0], 1: [0.0, 0.0]}[rank]  # the other rank's slot of the error path's
    sizes = []

    def fake_all_reduce(flat):
        sizes.append(flat.numel())
        flat.add_(torch.tensor(other if len(sizes) == 1 else other_gradient_flag))

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    batch = torch.tensor([nan, 1.0, 1.0]) if rank == 1 else torch.ones(3)
    player = Player("fit", [weight], torch.optim.SGD([weight], lr=0.1), names=["weight"])
    with pytest.raises(TrainingDivergedError) as info:
        player.update(Objective(), [(batch, 1.0)], step=4,
                      context=DistributedContext(rank=rank, world_size=2), precision=None,
                      device=torch.device("cpu"), clip_grad_norm=None)
    message = str(info.value)
    assert "gradient of player 'fit' is not finite in ['weight']" in message
    if rank == 1:
        assert "(on rank 1 of 2, whose own gradient is not finite)" in message
    else:
        assert "the gradient of rank(s) [1] is not finite, this rank's own (rank 0) is finite: see rank 1's error" \
            in message
    assert torch.equal(weight.detach(), torch.ones(3))  # no update
    assert sizes == [3 + 1 + 4 + 1, 2]  # the step's bucket; the gradient flags in 2 rank slots (error path)


@pytest.mark.parametrize("rank", [0, 1])
def test_huge_finite_gradients_whose_average_overflows_blame_no_rank(monkeypatch, rank):
    """Each rank's own gradient is finite (3e38 in every entry) but their sum over 2 ranks overflows float32.
    The per-rank screen of one sum per gradient, which the step used to make, overflowed too and blamed every
    rank; the ranks' own gradients are now tested exactly, on the error path, and none is blamed."""
    from hybridpgm.errors import TrainingDivergedError
    from hybridpgm.train.player_step import Player

    weight = torch.nn.Parameter(torch.ones(5))

    class Objective:
        def loss(self, player, batch):  # the value 0 (finite); the gradient 3e38 in each entry
            return 3e38 * (weight - weight.detach()).sum()

    sizes = []

    def fake_all_reduce(flat):  # two identical ranks (the gradients' bucket, then the error path's flags)
        sizes.append(flat.numel())
        flat.mul_(2)

    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    player = Player("fit", [weight], torch.optim.SGD([weight], lr=0.1), names=["weight"])
    with pytest.raises(TrainingDivergedError) as info:
        player.update(Objective(), [(torch.ones(1), 1.0)], step=2, context=DistributedContext(rank=rank, world_size=2),
                      precision=None, device=torch.device("cpu"), clip_grad_norm=None)
    assert str(info.value).startswith(
        "gradient of player 'fit' is not finite in ['weight'] (the loss, 0, is finite) (each rank's own gradient is "
        "finite: their average over 2 ranks overflowed) at step 2; no update was applied")
    assert sizes == [5 + 1 + 4 + 1, 2]
    assert torch.equal(weight.detach(), torch.ones(5))
