"""DirectTrace_ELBO (hybridpgm/infer/direct_trace_elbo.py): Trace_ELBO's loss and
gradients without the trace, and Trace_ELBO itself where no direct path applies."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import pyro_method

from hybridpgm import SVIObjective, VAE
from hybridpgm.errors import DataError
from hybridpgm.infer import DirectTrace_ELBO
from hybridpgm.infer.direct_trace_elbo import direct_elbo_path


def _vae(likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    return VAE(10, 3, (8,), likelihood=likelihood)


def _data(likelihood="bernoulli", n=7):
    g = torch.Generator().manual_seed(5)
    if likelihood == "bernoulli":
        return torch.bernoulli(torch.full((n, 10), 0.4), generator=g)
    return torch.randn(n, 10, generator=g)


def _loss_and_grads(elbo, vae, x, seed=1, **kwargs):
    vae.zero_grad(set_to_none=True)
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(vae.model, vae.guide, x, **kwargs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in vae.parameters()]


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("num_data", [None, 1000])
def test_same_loss_and_gradients_as_trace_elbo(likelihood, num_data):
    vae, x = _vae(likelihood), _data(likelihood)
    loss, grads = _loss_and_grads(Trace_ELBO(), vae, x, num_data=num_data)
    direct_loss, direct_grads = _loss_and_grads(DirectTrace_ELBO(), vae, x, num_data=num_data)
    # Trace_ELBO's value is a float sum plus (surrogate - its float): equal up to float32 rounding
    torch.testing.assert_close(direct_loss, loss, rtol=1e-6, atol=0.0)
    assert all(torch.equal(a, b) for a, b in zip(direct_grads, grads))  # bit for bit


def test_num_data_scales_the_loss_by_num_data_over_batch():
    vae, x = _vae(), _data()
    unscaled, _ = _loss_and_grads(DirectTrace_ELBO(), vae, x)
    scaled, _ = _loss_and_grads(DirectTrace_ELBO(), vae, x, num_data=70)
    torch.testing.assert_close(scaled, 10 * unscaled, rtol=1e-5, atol=0.0)


def test_the_direct_path_does_not_trace(monkeypatch):
    vae, x = _vae(), _data()
    assert direct_elbo_path(vae.model, vae.guide) is not None

    def refuse(*args, **kwargs):
        raise AssertionError("traced")

    monkeypatch.setattr(Trace_ELBO, "_get_traces", refuse)
    elbo = DirectTrace_ELBO()
    assert torch.isfinite(elbo.differentiable_loss(vae.model, vae.guide, x))
    assert isinstance(elbo.loss(vae.model, vae.guide, x), float)
    assert isinstance(elbo.loss_and_grads(vae.model, vae.guide, x), float)


def test_loss_and_loss_and_grads_match_trace_elbo():
    vae, x = _vae(), _data()
    values = []
    for elbo in (Trace_ELBO(), DirectTrace_ELBO()):
        pyro.set_rng_seed(3)
        loss = elbo.loss(vae.model, vae.guide, x, num_data=50)
        vae.zero_grad(set_to_none=True)
        pyro.set_rng_seed(4)
        trained = elbo.loss_and_grads(vae.model, vae.guide, x, num_data=50)
        values.append((loss, trained, [p.grad.clone() for p in vae.parameters()]))
    (a, b, ga), (c, d, gc) = values
    assert a == pytest.approx(c, rel=1e-6) and b == pytest.approx(d, rel=1e-6)
    assert all(torch.equal(g, h) for g, h in zip(ga, gc))


def test_plain_svi_takes_the_same_steps_and_registers_the_same_params():
    vae0, x = _vae(), _data()
    runs = []
    for elbo in (Trace_ELBO(), DirectTrace_ELBO()):
        with pyro.get_param_store().scope():
            vae = copy.deepcopy(vae0)
            svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), loss=elbo)
            pyro.set_rng_seed(0)
            losses = [svi.step(x) for _ in range(4)]
            runs.append((losses, [p.detach().clone() for p in vae.parameters()],
                         sorted(pyro.get_param_store().keys())))
    (losses, params, names), (direct_losses, direct_params, direct_names) = runs
    assert direct_losses == pytest.approx(losses, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(params, direct_params))
    assert direct_names == names and len(names) == len(list(vae0.parameters()))


class Regression(torch.nn.Module):
    """An arbitrary model/guide pair without a direct path."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.3, -0.2]))
        self.loc = torch.nn.Parameter(torch.zeros(()))

    def model(self, x, y):
        pyro.module("regression", self)
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ self.w + b, 1.0), obs=y)

    def guide(self, x, y):
        pyro.module("regression", self)
        pyro.sample("b", dist.Normal(self.loc, 0.5))


class OtherGuideVAE(VAE):
    @pyro_method
    def guide(self, x, num_data=None):
        with self._plate(x, num_data):
            loc, _ = self._encode(x)
            return pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))


def _elbo_pair_cases():
    regression = Regression()
    other = OtherGuideVAE(10, 3, (8,))
    vae = _vae()
    x, y = torch.randn(6, 2), torch.randn(6)
    return [
        ("an arbitrary model", regression.model, regression.guide, (x, y), {}, {}),
        ("a subclass overriding the guide", other.model, other.guide, (_data(),), {}, {}),
        ("model and guide of two modules", vae.model, _vae(seed=1).guide, (_data(),), {}, {}),
        ("two particles", vae.model, vae.guide, (_data(),), {"num_particles": 2}, {}),
    ]


@pytest.mark.parametrize("case", range(4))
def test_falls_back_to_trace_elbo(case):
    what, model, guide, args, elbo_kwargs, kwargs = _elbo_pair_cases()[case]
    pyro.set_rng_seed(2)
    expected = Trace_ELBO(**elbo_kwargs).differentiable_loss(model, guide, *args, **kwargs)
    pyro.set_rng_seed(2)
    got = DirectTrace_ELBO(**elbo_kwargs).differentiable_loss(model, guide, *args, **kwargs)
    assert torch.equal(got, expected), what


def test_falls_back_under_an_effect_handler():
    vae, x = _vae(), _data()
    scaled = poutine.scale(scale=0.5)
    pyro.set_rng_seed(2)
    expected = Trace_ELBO().differentiable_loss(scaled(vae.model), scaled(vae.guide), x)
    with poutine.scale(scale=0.5):
        pyro.set_rng_seed(2)
        got = DirectTrace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    torch.testing.assert_close(got, expected)


def test_the_direct_path_checks_the_data_as_the_model_does():
    vae = _vae()
    with pytest.raises(DataError, match="binary"):
        DirectTrace_ELBO().differentiable_loss(vae.model, vae.guide, torch.full((4, 10), 0.5))
    with pytest.raises(DataError, match="shape"):
        DirectTrace_ELBO().differentiable_loss(vae.model, vae.guide, torch.zeros(4, 9))


def test_svi_objective_uses_it_by_default():
    vae = _vae()
    assert isinstance(SVIObjective(vae.model, vae.guide).elbo, DirectTrace_ELBO)
