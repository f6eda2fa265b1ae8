"""hybridpgm.fit and the state around a step (hybridpgm/train/trainer.py): schedulers stepped with the player's
loss and only after a step the scaler took, frozen sub-modules kept frozen, every module's mode put back."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train import EvaluateEvery
from tests.train.helpers import LinearRegression, regression_data


def test_reduce_lr_on_plateau_is_stepped_with_the_player_s_loss():
    """Before, its step() was called without the metric: TypeError after the first update."""
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.5)
    result = fit(LinearRegression(), regression_data(), batch_size=16, epochs=20, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=0.2), lr_scheduler=plateau)
    assert result.optimizers["fit"].param_groups[0]["lr"] < 0.2  # the loss stalled at least once: it halved


class _Overflowing(LinearRegression):
    """A loss whose gradients overflow float32 once scaled by fp16's gradient scaler (2**16)."""

    def loss(self, player, batch):
        return super().loss(player, batch) + 1e35 * self.module.bias.sum()


def test_fp16_steps_the_scheduler_only_when_the_scaler_took_the_optimizer_step():
    """Before, the scheduler stepped although the scaler skipped the optimizer's step (torch warned of the
    order, and the schedule ran ahead); under skip_nonfinite it never did."""
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    result = fit(_Overflowing(), regression_data(), batch_size=16, max_steps=3, progress=False, seed=0,
                 precision="fp16", optim=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=step_lr)
    assert result.optimizers["fit"].param_groups[0]["lr"] == 0.1  # every step overflowed: none taken


class _FrozenNormRegression:
    """A regression whose input passes a batch norm the caller froze in eval() (pretrained statistics)."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 1))
        self.norm = self.module[0]

    def players(self):
        return {"fit": list(self.module[1].parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x) - y) ** 2).mean()


def test_fit_keeps_a_frozen_sub_module_frozen_and_puts_every_mode_back():
    """Found by an audit: fit called module.train(), which unfroze a batch norm the caller had put in eval()
    (its running mean moved by 1.2), and left every sub-module in training mode.  EvaluateEvery's train()
    after its evaluation did the same."""
    objective = _FrozenNormRegression()
    objective.norm.eval()
    stats = objective.norm.running_mean.clone()
    seen = []
    evaluate = EvaluateEvery(2, lambda o: seen.append(o.norm.training) or 0.0)
    fit(objective, regression_data(), epochs=2, batch_size=16, seed=0, progress=False, callbacks=[evaluate])
    assert seen and not any(seen)
    assert not objective.norm.training and objective.module.training
    assert torch.equal(objective.norm.running_mean, stats) and int(objective.norm.num_batches_tracked) == 0


def test_a_model_in_eval_trains_in_training_mode_and_is_put_back_in_eval():
    objective = _FrozenNormRegression()
    objective.module.eval()
    modes = []

    class Record:
        def on_step_end(self, info):
            modes.append(info.objective.norm.training)

    fit(objective, regression_data(), epochs=1, batch_size=16, seed=0, progress=False, callbacks=[Record()])
    assert modes and all(modes) and int(objective.norm.num_batches_tracked) > 0
    assert not objective.module.training and not objective.norm.training
    with pytest.raises(TrainingDivergedError):  # put back after an error too
        fit(objective, regression_data(), epochs=1, batch_size=16, seed=0, progress=False,
            optim=functools.partial(torch.optim.SGD, lr=1e30))
    assert not objective.module.training and not objective.norm.training
