"""fp16's gradient scaler in ``fit``'s step (:mod:`hybridpgm.train.scaler_step`): the steps it skips are counted
in ``FitResult.skipped_steps``, a long run of them warns once, and the step keeps its one host read."""

import functools
import math
import warnings

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingWarning
from hybridpgm.train.scaler_step import SKIPS_BEFORE_WARNING
from tests.train.helpers import LinearRegression, host_reads_per_step, regression_data

SGD = functools.partial(torch.optim.SGD, lr=1e-3)


class _Amplified:
    """A linear map whose loss is ``factor`` times the sum of its float16 outputs: the gradient reaching the
    outputs is ``factor`` times the scale, which float16 holds only below 65504."""

    def __init__(self, factor: float, nonfinite_at: int | None = None):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(4, 1)
        self.factor, self.nonfinite_at, self.calls = factor, nonfinite_at, 0

    def players(self):
        return {"p": list(self.module.parameters())}

    def loss(self, player, batch):
        self.calls += 1
        loss = (self.module(batch).float() * self.factor).sum()
        return loss + math.inf if self.calls == self.nonfinite_at else loss


class _Weights:
    """Records the weight after each step."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, info):
        self.seen.append(info.objective.module.weight.detach().clone())


def _data():
    return torch.randn(64, 4, generator=torch.Generator().manual_seed(0))


def test_fit_counts_the_steps_fp16s_gradient_scaler_skipped():
    """Found by an audit: the scaler skipped the optimizer's step where the scaled gradients overflowed, and
    ``FitResult.skipped_steps`` stayed 0.  The reference: the steps that left the parameters unchanged (SGD
    moves them at every step it takes)."""
    objective, weights = _Amplified(10.0), _Weights()
    start = objective.module.weight.detach().clone()
    result = fit(objective, _data(), batch_size=8, max_steps=16, precision="fp16", progress=False, seed=0,
                 optim=SGD, callbacks=[weights])
    unchanged = sum(torch.equal(a, b) for a, b in zip([start] + weights.seen, weights.seen))
    assert 0 < unchanged < 16  # the warm-up skipped some steps, and then the steps were taken
    assert result.skipped_steps == {"p": unchanged}
    assert len(result.history.loss["p"]) == 16  # a skipped step's loss is recorded, at the unchanged parameters


def test_a_run_of_skipped_steps_warns_once_naming_the_player_and_the_way_out():
    """Every step overflows float16 (a gradient of 1e3 times the scale): the parameters never move.  Before,
    nothing said so; now ``SKIPS_BEFORE_WARNING`` skips in a row warn, once."""
    for steps, warned in ((SKIPS_BEFORE_WARNING - 1, 0), (SKIPS_BEFORE_WARNING + 4, 1)):
        objective = _Amplified(1e3)
        start = [p.detach().clone() for p in objective.module.parameters()]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit(objective, _data(), batch_size=8, max_steps=steps, precision="fp16", progress=False,
                         seed=0, optim=SGD)
        mine = [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]
        assert len(mine) == warned
        assert result.skipped_steps == {"p": steps}
        assert all(torch.equal(a, b) for a, b in zip(start, objective.module.parameters()))
    assert f"skipped {SKIPS_BEFORE_WARNING} steps of player 'p' in a row (up to step 7)" in mine[0]
    assert "precision='bf16'" in mine[0] and "precision=None" in mine[0] and "fp16" in mine[0]


def test_the_scalers_warm_up_is_counted_without_a_warning():
    """The first steps' gradients overflow at the initial scale 2**16 until the scaler has lowered it: normal,
    counted, not warned of."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        result = fit(LinearRegression(), regression_data(), batch_size=16, epochs=5, precision="fp16",
                     progress=False, seed=0, optim=SGD)
    assert 0 < result.skipped_steps["fit"] < SKIPS_BEFORE_WARNING


def test_a_nonfinite_loss_skipped_under_fp16_leaves_the_scaler_ready_for_the_next_step():
    """The scaler unscales before the step's read; a step skipped for its loss must still close the scaler's
    step (else the next ``unscale_`` raises)."""
    objective = _Amplified(1e-3, nonfinite_at=2)
    result = fit(objective, _data(), batch_size=8, max_steps=4, precision="fp16", progress=False, seed=0,
                 optim=SGD, skip_nonfinite=True)
    assert result.steps == 4 and result.skipped_steps == {"p": 1}
    assert math.isinf(result.history.loss["p"][1])


@pytest.mark.parametrize("scheduler", [None, functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)])
def test_an_fp16_step_reads_the_host_once(monkeypatch, scheduler):
    """Before, each fp16 step read the host twice more than its loss's read (``GradScaler.step`` reads its
    overflow flag; with a scheduler, two reads of the scale told a skipped step): now the overflow flag rides in
    the step's one read."""
    assert host_reads_per_step(monkeypatch, optim=SGD, precision="fp16", lr_scheduler=scheduler) == 1
