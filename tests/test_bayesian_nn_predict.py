"""The predictive functions of :mod:`hybridpgm.bayesian_nn`: ``predictive_samples`` (posterior predictive draws
of a model and guide) and ``mc_dropout_predict`` (Monte Carlo dropout), their arguments, their modes and their
``generator=``."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.bayesian_nn import BayesianRegressor, mc_dropout_predict, predictive_samples
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.nn import mlp
from tests import generator_contract as contract


def test_mc_dropout_predict():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(64, 1), torch.nn.BatchNorm1d(1))
    net.train()
    x = torch.randn(8, 3)
    mean, var = mc_dropout_predict(net, x, num_samples=200)
    assert mean.shape == var.shape == (8, 1) and (var > 0).all()
    assert net.training and net[2].training  # modes are restored
    net.eval()
    with torch.no_grad():
        deterministic = net(x)
    # inverted dropout: the MC mean estimates the eval-mode output (linear tail)
    torch.testing.assert_close(mean, deterministic, rtol=0.0, atol=0.25 * deterministic.abs().max().item())
    with pytest.raises(ModelSpecError, match="no dropout"):
        mc_dropout_predict(mlp([3, 1]), x)


@pytest.mark.parametrize("num_samples", [0, -1, 1, 2.0, True, "3"])
def test_mc_dropout_predict_needs_two_or_more_samples(num_samples):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
    with pytest.raises(hybridpgm.errors.ConfigError, match="mc_dropout_predict num_samples must be an integer >= 2"):
        mc_dropout_predict(net, torch.zeros(2, 3), num_samples)


@pytest.mark.parametrize("num_samples", [0, -1, 2.0, True])
def test_predictive_samples_needs_a_positive_count(num_samples):
    model = BayesianRegressor(torch.nn.Linear(3, 1), num_data=5)
    with pytest.raises(hybridpgm.errors.ConfigError, match="predictive_samples num_samples must be a positive integer"):
        predictive_samples(model, lambda x, y=None: None, torch.zeros(2, 3), num_samples)


def test_mc_dropout_predict_leaves_every_sub_module_in_its_mode():
    """Before, the whole module was put back in its own mode: a frozen (eval) batch norm inside a training
    net came back training, and later steps updated its running statistics."""
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 1))
    net.train()
    net[1].eval()
    modes = [m.training for m in net.modules()]
    mc_dropout_predict(net, torch.randn(5, 3), num_samples=3)
    assert [m.training for m in net.modules()] == modes


def test_regressor_predicts_at_more_points_than_it_was_trained_on():
    """Before, forward refused any x with more rows than num_data, also without y: no posterior predictive on a
    test grid larger than the training set (Predictive or predictive_samples)."""
    from pyro.infer import Predictive
    from pyro.infer.autoguide import AutoNormal

    model = BayesianRegressor(torch.nn.Linear(1, 1), num_data=5)
    guide = AutoNormal(model)
    grid = torch.linspace(-2, 2, 12)[:, None]
    with pyro.get_param_store().scope():
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
        svi.step(grid[:5], 2 * grid[:5, 0])
        assert predictive_samples(model, guide, grid, num_samples=3).shape == (3, 12)
        assert Predictive(model, guide=guide, num_samples=3)(grid)["y"].shape == (3, 12)
    with pytest.raises(DataError, match="12 training rows, more than num_data=5"):
        model(grid, torch.zeros(12))


def test_predictive_samples_of_a_model_returning_none_is_a_model_spec_error():
    """Before, Predictive's stacking of the Nones raised a raw TypeError."""
    from pyro.infer.autoguide import AutoNormal

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(w * x, 1.0).to_event(1))

    guide = AutoNormal(model)
    with pyro.get_param_store().scope():
        guide(torch.zeros(3))
        with pytest.raises(ModelSpecError, match="the model .*model returned None; it must return the network"):
            predictive_samples(model, guide, torch.zeros(3), 5)


# -- the generator= argument (the package's RNG contract) -----------------------------------------------------------
def _predictive_call():
    from pyro.infer.autoguide import AutoNormal

    torch.manual_seed(0)
    model = BayesianRegressor(nn.Linear(3, 1), num_data=5)
    guide = AutoNormal(model)
    x, y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(4)
    with pyro.get_param_store().scope() as state:
        guide(x, y)  # the guide's parameters, once

    def call(**kw):
        with pyro.get_param_store().scope(state):
            return predictive_samples(model, guide, x, 6, **kw)

    return call


def _mc_dropout_call():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)).eval()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    return lambda **kw: mc_dropout_predict(net, x, 5, **kw)


_GENERATOR_CALLS = {"predictive_samples": _predictive_call, "mc_dropout_predict": _mc_dropout_call}


@pytest.mark.parametrize("function", list(_GENERATOR_CALLS))
def test_a_generator_makes_the_draws_a_function_of_its_state(function):
    """``generator=`` (they took none): the guide's and model's sample statements (Pyro's) and the dropout masks
    draw from torch's global streams seeded from the generator, restored afterwards."""
    contract.assert_generator_contract(_GENERATOR_CALLS[function](), f"{function} generator")
