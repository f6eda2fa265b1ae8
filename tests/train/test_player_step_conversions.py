"""The finite guard's one host read converts only what is not yet in the read's dtype (hybridpgm/train/player_step.py
and :func:`hybridpgm.train.finite_checks.stacked_in`): a ``Tensor.to`` that converts nothing still costs about
2.5 us on a CPU, so a float32 step of a model of many parameters paid one per gradient for nothing."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.player_step import Player


class _CountedConversions(TorchFunctionMode):
    """Counts the ``Tensor.to`` calls made inside it and records every host read."""

    def __init__(self):
        super().__init__()
        self.conversions, self.reads = 0, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name == "to":
            self.conversions += 1
        if name in ("tolist", "item"):
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


class _Squares:
    """``sum_j mean(batch) * ||w_j||^2`` over ``n`` float32 parameters: no conversion of its own."""

    def __init__(self, n):
        self.weights = [torch.nn.Parameter(torch.full((3 + j,), 0.5)) for j in range(n)]

    def loss(self, player, batch):
        return sum(batch.mean() * (w * w).sum() for w in self.weights)


def _step(objective, batch):
    player = Player("fit", objective.weights, torch.optim.SGD(objective.weights, lr=0.1))
    counted = _CountedConversions()
    with counted:
        loss = player.update(objective, [(batch, 1.0)], step=0, context=DistributedContext(rank=0, world_size=1),
                             precision=None, device=torch.device("cpu"), clip_grad_norm=None)
    return loss, counted


@pytest.mark.parametrize("n", [1, 12])
def test_a_float32_step_converts_nothing_whatever_its_number_of_parameters(n):
    objective = _Squares(n)
    loss, counted = _step(objective, torch.ones(4, dtype=torch.float32))
    assert loss == pytest.approx(sum(0.25 * (3 + j) for j in range(n)))
    assert counted.conversions == 0  # 46d51de: one per gradient's sum and one for the loss
    assert counted.reads == ["tolist"]  # still the one read of the step
    for j, w in enumerate(objective.weights):  # the step was taken: w - 0.1 * 2 w
        assert torch.equal(w.detach(), torch.full((3 + j,), 0.5 * 0.8))


def test_stacked_in_converts_only_the_scalars_of_another_dtype():
    from hybridpgm.train.finite_checks import stacked_in  # imported here: 46d51de has none (the test fails there)

    loss64 = torch.tensor(1 + 2.0 ** -40, dtype=torch.float64)
    sums = [torch.tensor(3.0), torch.tensor(float("inf")), torch.tensor(True)]
    counted = _CountedConversions()
    with counted:
        same = stacked_in(torch.float32, [torch.tensor(2.0), *sums[:2]])
    assert counted.conversions == 0 and same.dtype == torch.float32
    assert same.tolist() == [2.0, 3.0, float("inf")]
    with counted:
        wide = stacked_in(torch.float64, [loss64, *sums])
    assert counted.conversions == 3  # the float32 sums and the bool flag, not the float64 loss
    assert wide.dtype == torch.float64 and wide.tolist() == [1 + 2.0 ** -40, 3.0, float("inf"), 1.0]
