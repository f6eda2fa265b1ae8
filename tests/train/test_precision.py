import functools

import pytest
import torch

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.errors import ConfigError
from hybridpgm.train.callbacks import EarlyStopping
from tests.train.helpers import LinearRegression


def _binary(n=64, d=16):
    return torch.bernoulli(torch.full((n, d), 0.3), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(precision):
    torch.manual_seed(0)
    vae = VAE(16, 2, (32,))
    x = _binary()
    before = vae.elbo(x, 20).mean()
    result = fit(SVIObjective(vae.model, vae.guide), x, epochs=40, batch_size=32, precision=precision,
                 progress=False, seed=0, optim=functools.partial(torch.optim.Adam, lr=1e-2))
    assert all(torch.isfinite(torch.tensor(result.history.loss["elbo"])))
    assert vae.elbo(x, 20).mean() > before + 1.0
    assert all(p.dtype == torch.float32 for p in vae.parameters())


def test_bf16_autocast_is_active_inside_the_loss():
    seen = []

    class Probe:
        def __init__(self):
            self.module = torch.nn.Linear(4, 1)

        def players(self):
            return {"p": list(self.module.parameters())}

        def loss(self, player, batch):
            out = self.module(batch)
            seen.append(out.dtype)
            return out.float().pow(2).mean()

    fit(Probe(), torch.randn(8, 4), batch_size=8, precision="bf16", progress=False, seed=0)
    assert seen == [torch.bfloat16]


def test_activation_checkpointing_leaves_the_run_unchanged():
    states = []
    for flag in (False, True):
        torch.manual_seed(0)
        vae = VAE(16, 2, (32, 32), checkpoint_activations=flag)
        fit(SVIObjective(vae.model, vae.guide), _binary(), epochs=2, batch_size=16, progress=False, seed=1)
        states.append(vae.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k])


def test_unknown_precision():
    vae = VAE(16, 2)
    with pytest.raises(ConfigError, match="precision"):
        fit(SVIObjective(vae.model, vae.guide), _binary(), precision="fp8", progress=False)


def test_accumulation_keeps_a_float64_loss_in_float64():
    """Found by an audit: each micro-batch's loss was cast to float32 before its weight m_i / B, so a float64
    model with accumulate=3 landed 1.3e-8 from one step on the whole batch (1e-16 now), and the history's loss
    was float32-rounded."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.1

    def run(accumulate):
        objective = LinearRegression(d_in=5)
        objective.module.double()
        result = fit(objective, (x, y), batch_size=12, accumulate=accumulate, epochs=2, seed=0, shuffle=False,
                     progress=False, optim=functools.partial(torch.optim.SGD, lr=0.1))
        return objective.module.weight.detach(), result.history.loss["fit"]

    (w1, l1), (w3, l3) = run(1), run(3)
    assert (w1 - w3).abs().max() < 1e-14
    assert max(abs(a - b) for a, b in zip(l1, l3)) < 1e-14


class Float64Offset:
    """``offset + w^2`` in float64 (one weight, ``w = 1`` at the start): under SGD with learning rate ``lr`` the
    loss falls strictly, by less than float32's spacing at ``1e6`` (0.0625) per step, and its exact values
    replay on the host as ``w <- (1 - 2 lr) w``."""

    def __init__(self, offset):
        self.offset = offset
        self.module = torch.nn.Module()
        self.module.w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))

    def players(self):
        return {"p": [self.module.w]}

    def loss(self, player, batch):
        return self.offset + (self.module.w ** 2).sum() + 0 * batch.sum()

    @staticmethod
    def replay(offset, steps, lr=0.01):
        w, out = 1.0, []
        for _ in range(steps):
            out.append(offset + w * w)
            w -= lr * 2 * w
        return out


FIT_F64 = dict(batch_size=10, progress=False, seed=0, optim=functools.partial(torch.optim.SGD, lr=0.01))


def test_a_float64_loss_reaches_the_history_the_callbacks_and_the_scheduler_unrounded():
    """Found by an audit: the step's loss was read on the host as float32, so the history of ``1e6 + w^2`` was
    off by up to 0.024 and repeated values; ReduceLROnPlateau and EarlyStopping saw a strictly falling loss
    stall (EarlyStopping(patience=2) stopped after 16 of 50 steps)."""
    seen = []

    class Record:
        def on_step_end(self, info):
            seen.append(info.losses["p"])

    steps = 50
    x = torch.zeros(10, 1, dtype=torch.float64)
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, threshold=0.0)
    result = fit(Float64Offset(1e6), x, epochs=steps, lr_scheduler=plateau,
                 callbacks=[Record(), EarlyStopping("p", patience=2)], **FIT_F64)
    exact = Float64Offset.replay(1e6, steps)
    assert result.steps == steps and not result.stopped_early
    assert max(abs(a - b) for a, b in zip(result.history.loss["p"], exact)) < 1e-9
    assert seen == result.history.loss["p"]
    assert result.optimizers["p"].param_groups[0]["lr"] == 0.01  # never reduced: every step improved


@pytest.mark.parametrize("skip_nonfinite", [False, True])
def test_a_finite_float64_loss_beyond_float32s_range_is_not_a_divergence(skip_nonfinite):
    """Found by an audit: a float64 loss of 1e300 read as inf on the host (float32 overflows at 3.4e38), so the
    history recorded inf for a finite, healthy run."""
    objective = Float64Offset(1e300)
    result = fit(objective, torch.zeros(10, 1, dtype=torch.float64), epochs=3, skip_nonfinite=skip_nonfinite,
                 **FIT_F64)
    assert result.history.loss["p"] == [1e300] * 3
    assert not result.diverged and result.skipped_steps == {"p": 0}
    assert objective.module.w.item() == pytest.approx(0.98 ** 3, rel=1e-12)  # every step was taken
