"""The non-finite guard of a player's step (hybridpgm/train/player_step.py)."""

import functools
import warnings

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.player_step import _all_finite
from tests.train.helpers import LinearRegression, regression_data


class NormOfScaled:
    """``mean_i ||x_i * s||``: a finite loss whose gradient in ``s`` is NaN at a
    zero row (the derivative of the square root at 0, times 0) -- the issue's
    ``((batch - c)**2).sum(-1).sqrt().mean()`` at a row equal to ``c``."""

    def __init__(self, d=4):
        self.module = torch.nn.Module()
        self.module.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, d))

    def players(self):
        return {"fit": [self.module.scale]}

    def loss(self, player, batch):
        return ((batch * self.module.scale) ** 2).sum(-1).sqrt().mean()


def data_with_zero_row(row, n=64, d=4):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    x[row] = 0.0
    return x


SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("accumulate", [1, 4])
def test_nan_gradient_raises_before_any_update_and_the_checkpoint_is_the_last_good_step(tmp_path, accumulate):
    ckpt = tmp_path / "nan.pt"
    objective = NormOfScaled()
    with pytest.raises(TrainingDivergedError) as info:  # row 24 is in the batch of step 3 (0-based)
        fit(objective, data_with_zero_row(24), epochs=2, batch_size=8, accumulate=accumulate, shuffle=False,
            optim=SGD, checkpoint=ckpt, checkpoint_every=1, progress=False, seed=0)
    assert info.value.step == 3 and info.value.player == "fit"
    assert "gradient of player 'fit' is not finite in ['scale']" in str(info.value)
    saved = load_checkpoint(ckpt)
    assert saved["step"] == 3
    assert torch.isfinite(saved["module"]["scale"]).all()
    assert torch.equal(saved["module"]["scale"], objective.module.scale.detach())  # no update was applied


def test_nan_gradient_on_the_last_step_raises_too():
    with pytest.raises(TrainingDivergedError, match="at step 7") as info:
        fit(NormOfScaled(), data_with_zero_row(63), epochs=1, batch_size=8, shuffle=False, optim=SGD,
            progress=False, seed=0)
    assert info.value.step == 7


def test_skip_nonfinite_skips_and_counts_the_bad_steps(tmp_path):
    objective = NormOfScaled()
    result = fit(objective, data_with_zero_row(24), epochs=2, batch_size=8, shuffle=False, optim=SGD,
                 checkpoint=tmp_path / "c.pt", progress=False, seed=0, skip_nonfinite=True)
    assert result.steps == 16 and result.skipped_steps == {"fit": 2}  # once per epoch
    assert torch.isfinite(objective.module.scale).all()
    assert load_checkpoint(tmp_path / "c.pt")["players"]["fit"]["skipped"] == 2


def test_a_skipped_step_changes_nothing():
    data = data_with_zero_row(63)  # the zero row is the last batch's
    a, b = NormOfScaled(), NormOfScaled()
    fit(a, data, epochs=1, batch_size=8, shuffle=False, optim=SGD, progress=False, seed=0, max_steps=7)
    result = fit(b, data, epochs=1, batch_size=8, shuffle=False, optim=SGD, progress=False, seed=0,
                 skip_nonfinite=True)
    assert result.skipped_steps == {"fit": 1}
    assert torch.equal(a.module.scale, b.module.scale)


class ScaledSum:
    """The finite loss ``scale * w.sum()`` of ``size`` parameters starting at ``start``: its gradient is
    ``scale`` in every entry."""

    def __init__(self, size: int, scale: float, start: float):
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.full((size,), start))
        self.scale = scale

    def players(self):
        return {"fit": [self.module.w]}

    def loss(self, player, batch):
        return (self.module.w * self.scale).sum() + 0.0 * batch.sum()


def Overflow():
    """A finite loss and gradient (1e30) whose SGD update overflows float32."""
    return ScaledSum(2, 1e30, 1.0)


def test_overflowed_parameters_are_an_error_and_never_checkpointed(tmp_path):
    ckpt = tmp_path / "o.pt"
    with pytest.raises(TrainingDivergedError, match=r"parameters \['w'\] \(player 'fit'\) are not finite after step 1"):
        fit(Overflow(), torch.zeros(8, 1), batch_size=8, max_steps=1, checkpoint=ckpt, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=1e10))
    assert not ckpt.exists()


def HugeGradient():
    """A finite loss whose finite gradient, 3e38 in each of 4 entries, sums past float32's
    largest value: the guard's one-pass sum overflows, and its exact check must let the step through."""
    return ScaledSum(4, 3e38, 0.0)


def test_finite_gradients_whose_sum_overflows_are_stepped():
    objective = HugeGradient()
    result = fit(objective, torch.zeros(8, 1), batch_size=8, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=1e-37))
    assert result.steps == 1 and result.skipped_steps == {"fit": 0}
    assert torch.allclose(objective.module.w.detach(), torch.full((4,), -30.0), rtol=1e-5)


class _GivenGradient(torch.autograd.Function):
    """Value 0, gradient ``g``: a finite loss with any gradient."""

    @staticmethod
    def forward(ctx, w, g):
        ctx.save_for_backward(g)
        return (w * 0.0).sum()

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        return grad * g, None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_entry_is_caught_whatever_the_others(bad):
    """One NaN/inf entry among huge finite ones (whose sum alone would already overflow)."""
    objective = HugeGradient()
    g = torch.tensor([3e38, 3e38, bad, -3e38])
    objective.loss = lambda player, batch: _GivenGradient.apply(objective.module.w, g)
    with pytest.raises(TrainingDivergedError, match=r"gradient of player 'fit' is not finite in \['w'\]"):
        fit(objective, torch.zeros(8, 1), batch_size=8, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=1e-37))
    assert torch.equal(objective.module.w.detach(), torch.zeros(4))


def test_an_exploding_loss_is_reported_in_the_result():
    with pytest.warns(RuntimeWarning, match="loss of player 'fit' exploded"):
        result = fit(LinearRegression(), regression_data(), epochs=5, batch_size=16, progress=False, seed=0,
                     optim=functools.partial(torch.optim.SGD, lr=1.0))
    first, last = result.loss_explosions["fit"]
    assert result.diverged and last > 1e3 * first
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        healthy = fit(LinearRegression(), regression_data(), epochs=5, batch_size=16, progress=False, seed=0,
                      optim=functools.partial(torch.optim.SGD, lr=0.5))
    assert not healthy.diverged and healthy.loss_explosions == {} and healthy.skipped_steps == {"fit": 0}


def test_the_guard_adds_no_host_read_per_step(monkeypatch):
    """Per step and player, the loss and the finiteness of loss and gradients
    reach the host in one read (on CUDA, one synchronisation), as the loss alone did."""
    reads = []
    for method in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)

    def host_reads(steps):
        reads.clear()
        fit(LinearRegression(), regression_data(), epochs=10, batch_size=16, max_steps=steps, progress=False,
            seed=0, optim=SGD)
        return len(reads)

    assert host_reads(7) - host_reads(3) == 4


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_all_finite_sees_every_non_finite_value(bad):
    tensors = [torch.randn(3, 4), torch.empty(0), torch.randn(5, dtype=torch.float64)]
    if bad is not None:
        tensors[2][3] = bad
    assert bool(_all_finite(tensors, torch.device("cpu"))) is (bad is None)
    assert bool(_all_finite([torch.tensor(1e300, dtype=torch.float64), torch.ones(2)], torch.device("cpu")))
