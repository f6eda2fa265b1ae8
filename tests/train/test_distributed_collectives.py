"""Data parallelism's logic with the collectives faked in one process (hybridpgm/train/distributed.py): the checks
that ranks agree, gradient all-reduce, flags in rank slots, rank 0's state broadcast, the exit wait, frozen
players, and non-finite or overflowing gradients named on every rank (the torchrun runs: test_distributed.py)."""

import ctypes
import os
import threading
import time

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.distributed import DistributedContext, _thread_states, _wait_for_idle_threads, differences


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
