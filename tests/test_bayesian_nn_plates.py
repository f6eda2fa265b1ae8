"""BayesianRegressor under vectorized plates (hybridpgm/bayesian_nn_plates.py): before, every vectorized plate
was refused with a ModelSpecError, so ``Predictive(parallel=True)`` and ``vectorize_particles=True`` failed and
``arviz.from_pyro`` silently dropped its log_likelihood group.  Each check compares the vectorized run with the
same weights run one draw at a time."""

import warnings

import arviz as az
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS, Predictive
from torch import nn

from hybridpgm.bayesian_nn import BayesianRegressor
from hybridpgm.diagnostics import from_mcmc
from hybridpgm.errors import ModelSpecError
from tests.bayesian_nn_particles import vectorized_and_in_turn

SHAPES = {"net.0.weight": (3, 2), "net.0.bias": (3,), "net.2.weight": (1, 3), "net.2.bias": (1,)}


def _regressor(num_data=20, **kwargs):
    torch.manual_seed(0)
    return BayesianRegressor(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), num_data=num_data,
                             **kwargs)


def _draws(num, generator_seed=1):
    g = torch.Generator().manual_seed(generator_seed)
    return {n: torch.randn((num,) + s, generator=g) for n, s in SHAPES.items()}


def _one_at_a_time(model, draws, x, y):
    """``(means, log-likelihoods)`` of the draws run in turn, each ``S x B``."""
    means, logs = [], []
    for i in range(next(iter(draws.values())).shape[0]):
        trace = poutine.trace(poutine.condition(model, {n: v[i] for n, v in draws.items()})).get_trace(x, y)
        means.append(trace.nodes["_RETURN"]["value"])
        logs.append(trace.nodes["y"]["fn"].log_prob(y))
    return torch.stack(means), torch.stack(logs)


def test_parallel_predictive_gives_the_draws_run_in_turn():
    model = _regressor()
    x, y = torch.randn(20, 2), torch.randn(20)
    draws = _draws(6)
    means, logs = _one_at_a_time(model, draws, x, y)
    parallel = Predictive(model, posterior_samples=draws, return_sites=["_RETURN"], parallel=True)(x)["_RETURN"]
    sequential = Predictive(model, posterior_samples=draws, return_sites=["_RETURN"])(x)["_RETURN"]
    assert parallel.shape == sequential.shape == (6, 20)
    torch.testing.assert_close(parallel, means)
    torch.testing.assert_close(sequential, means)
    # the trace arviz.from_pyro reads (Pyro reshapes an event-shaped draw to (S, out, in) there)
    trace = Predictive(model, posterior_samples=draws).get_vectorized_trace(x, y)
    torch.testing.assert_close(trace.nodes["y"]["fn"].log_prob(trace.nodes["y"]["value"]), logs)
    # the weights are sample sites again after the vectorized run
    assert all("weight" not in layer.__dict__ for layer in model.net.modules())
    sites = poutine.trace(model).get_trace(x, y).nodes
    assert sites["net.0.weight"]["value"].shape == (3, 2) and not sites["net.0.weight"]["is_observed"]


def test_vectorized_particles_give_the_particles_run_in_turn():
    """Trace_ELBO(vectorize_particles=True).loss is the mean over the guide's particles of
    log q(w) - log p(w) - log p(y | w), each particle's model run alone."""
    model = _regressor()
    x, y = torch.randn(20, 2), torch.randn(20)
    loss, in_turn, _ = vectorized_and_in_turn(model, x, y, list(SHAPES))
    assert loss == pytest.approx(in_turn, rel=1e-5)


def test_arviz_from_pyro_keeps_the_log_likelihood_of_from_mcmc():
    model = _regressor()
    torch.manual_seed(0)
    x = torch.randn(20, 2)
    y = x @ torch.tensor([1.0, -2.0]) + 0.3 * torch.randn(20)
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), num_samples=8, warmup_steps=8, disable_progbar=True)
    mcmc.run(x, y)
    ours = from_mcmc(mcmc)
    stacked = from_mcmc(mcmc, parallel=True)  # the vectorized trace (Predictive(parallel=True)), as ArviZ 0.x's
    assert ours.log_likelihood["y"].shape == (1, 8, 20)
    torch.testing.assert_close(torch.as_tensor(stacked.log_likelihood["y"].values),
                               torch.as_tensor(ours.log_likelihood["y"].values))
    if hasattr(az, "from_pyro"):  # ArviZ 0.x (ArviZ 1.x has no Pyro converter: from_mcmc above is the one)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # before: "Could not get vectorized trace, log_likelihood group ..."
            theirs = az.from_pyro(mcmc)
        assert theirs.log_likelihood["y"].shape == (1, 8, 20)
        torch.testing.assert_close(torch.as_tensor(theirs.log_likelihood["y"].values),
                                   torch.as_tensor(ours.log_likelihood["y"].values))


def test_a_plate_of_the_caller_at_dim_minus_one_puts_the_rows_at_dim_minus_two():
    model = _regressor()
    x, y = torch.randn(5, 2), torch.randn(5)
    draws = _draws(3)  # batch dims (3,) on the right: the plate "groups" at dim -1
    means, logs = _one_at_a_time(model, draws, x, y)

    def grouped(x, y):
        with pyro.plate("groups", 3):
            return model(x, y)

    trace = poutine.trace(poutine.condition(grouped, draws)).get_trace(x, y)
    assert trace.nodes["y"]["cond_indep_stack"][-1].dim == -2
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"], means.T)
    torch.testing.assert_close(trace.nodes["y"]["fn"].log_prob(trace.nodes["y"]["value"]), logs.T)


def test_a_named_regressor_and_prior_draws_under_a_plate():
    model = _regressor(name="left")
    x = torch.randn(30, 2)  # more rows than num_data: a prediction grid
    with pyro.plate("draws", 7, dim=-2):
        trace = poutine.trace(model).get_trace(x)
    assert trace.nodes["left.y"]["value"].shape == trace.nodes["_RETURN"]["value"].shape == (7, 30)
    assert trace.nodes["left.net.0.weight"]["value"].shape == (7, 1, 3, 2)
    weights = {f"left.{n}": trace.nodes[f"left.{n}"]["value"][:, 0] for n in SHAPES}
    for i in range(7):
        alone = poutine.condition(model, {n: v[i] for n, v in weights.items()})(x)
        torch.testing.assert_close(trace.nodes["_RETURN"]["value"][i], alone)


def test_dropout_draws_a_mask_per_weight_draw():
    torch.manual_seed(0)
    model = BayesianRegressor(nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1)), num_data=4)
    x = torch.randn(4, 2)
    same = {n: v[:1].expand((5,) + v.shape[1:]) for n, v in
            {"net.0.weight": torch.randn(1, 8, 2), "net.0.bias": torch.randn(1, 8),
             "net.2.weight": torch.randn(1, 1, 8), "net.2.bias": torch.randn(1, 1)}.items()}
    out = Predictive(model, posterior_samples=same, return_sites=["_RETURN"], parallel=True)(x)["_RETURN"]
    assert out.shape == (5, 4) and not torch.equal(out[0], out[1])  # one mask each, as the draws in turn
    model.eval()
    out = Predictive(model, posterior_samples=same, return_sites=["_RETURN"], parallel=True)(x)["_RETURN"]
    torch.testing.assert_close(out, out[:1].expand(5, 4))


def test_batch_norm_in_training_mode_and_misshapen_draws_are_refused_by_name():
    torch.manual_seed(0)
    model = BayesianRegressor(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)), num_data=8)
    x = torch.randn(8, 2)
    with pytest.raises(ModelSpecError, match=r"batch norm net\.1 is in training mode.*\['draws'\].*eval"):
        with pyro.plate("draws", 2, dim=-2):
            model(x)
    model.eval()
    with pyro.plate("draws", 2, dim=-2):
        assert model(x).shape == (2, 8)
    model = _regressor()
    bad = {"net.0.weight": torch.randn(5, 1, 3, 2)}
    with pytest.raises(ModelSpecError, match=r"weight '0\.weight' has batch shape \(5, 1\).*'draws' \(dim -2, "
                                             r"size 4\)"):
        with pyro.plate("draws", 4, dim=-2):
            poutine.condition(model, bad)(x)
    with pytest.raises(ModelSpecError, match=r"weight '0\.weight' has shape \(4, 1, 2, 3\), expected the plates' "
                                             r"batch shape \(4, 1\) followed by the weight's \(3, 2\)"):
        with pyro.plate("draws", 4, dim=-2):
            poutine.condition(model, {"net.0.weight": torch.randn(4, 1, 2, 3)})(x)


@pytest.mark.parametrize("num_samples", [4, 3])  # 3: as many draws as groups, two plates of one size
def test_parallel_predictive_under_a_plate_of_the_caller_at_dim_minus_one(num_samples):
    """MCMC's draws of a regressor under a caller's plate at dim -1 are ``(S, G) + shape``; Pyro's parallel
    Predictive passes them on so (no 1 between S and G): S is read first, the groups on the right.  Before, the
    whole batch shape was read on the left, ``(S, G, 1)``, and refused."""
    model = _regressor()
    x, y = torch.randn(5, 2), torch.randn(5)
    g = torch.Generator().manual_seed(2)
    draws = {n: torch.randn((num_samples, 3) + s, generator=g) for n, s in SHAPES.items()}

    def grouped(x, y=None):
        with pyro.plate("groups", 3):
            return model(x, y)

    parallel = Predictive(grouped, posterior_samples=draws, return_sites=["_RETURN"], parallel=True)(x)["_RETURN"]
    assert parallel.shape == (num_samples, 5, 3)
    for s in range(num_samples):
        for j in range(3):
            alone = poutine.condition(model, {n: v[s, j] for n, v in draws.items()})(x)
            torch.testing.assert_close(parallel[s, :, j], alone)
    # the trace arviz.from_pyro reads: each (draw, row, group) the log-likelihood of that draw alone
    trace = Predictive(grouped, posterior_samples=draws).get_vectorized_trace(x, y)
    logs = trace.nodes["y"]["fn"].log_prob(trace.nodes["y"]["value"])
    assert logs.shape == (num_samples, 5, 3)
    _, alone = _one_at_a_time(model, {n: v[:, 1] for n, v in draws.items()}, x, y)
    torch.testing.assert_close(logs[:, :, 1], alone)


class _InPlaceOutput(nn.Module):
    """Writes its output into a tensor it makes: runs on one draw, not under torch.vmap."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        out = torch.zeros(x.shape[0], 1)
        out += self.lin(x)
        return out


class _ReadsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x) if float(self.lin.weight.abs().max()) < 1e6 else -self.lin(x)


@pytest.mark.parametrize("net", [_InPlaceOutput, _ReadsWeight])
def test_a_network_torch_vmap_cannot_batch_is_named_with_the_draws_in_turn(net):
    """Before: torch's raw RuntimeError ("output with shape [5, 1] doesn't match the broadcast shape", ".item()")."""
    torch.manual_seed(0)
    model = BayesianRegressor(net(), num_data=5)
    x = torch.randn(5, 2)
    assert model(x).shape == (5,)  # one draw at a time it runs
    with pytest.raises(ModelSpecError, match=r"not under torch\.vmap.*\['draws'\].*Predictive\(\.\.\., "
                                             r"parallel=False\)"):
        with pyro.plate("draws", 2, dim=-2):
            model(x)
    assert all("weight" not in layer.__dict__ for layer in model.net.modules())


def test_an_error_of_the_network_on_one_draw_is_its_own():
    model = _regressor()
    with pytest.raises(RuntimeError, match="mat1 and mat2") as caught:
        with pyro.plate("draws", 2, dim=-2):
            model(torch.randn(5, 4))  # 4 features, the network takes 2: as the draws in turn fail
    assert not isinstance(caught.value, ModelSpecError)
