"""Degenerate inputs of the Bayesian networks (hybridpgm/bayesian_nn.py): no rows, one example without its batch
dimension, a guide that never ran (audit_empty findings)."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from hybridpgm.bayesian_nn import BayesianRegressor, mc_dropout_predict, predictive_samples
from hybridpgm.errors import ConfigError, DataError, ModelSpecError


def _regressor():
    torch.manual_seed(0)
    return BayesianRegressor(torch.nn.Linear(3, 1), num_data=3), torch.randn(3, 3), torch.randn(3)


def test_no_rows_are_refused_naming_the_shape():
    """Before: Pyro's bare ZeroDivisionError from the subsampled data plate."""
    model, x, y = _regressor()
    guide = AutoNormal(model)
    with pyro.get_param_store().scope():
        guide(x, y)
        for call in (lambda: model(x[:0]), lambda: model(x[:0], y[:0]),
                     lambda: predictive_samples(model, guide, x[:0], num_samples=2)):
            with pytest.raises(DataError, match=r"BayesianRegressor x has shape \(0, 3\): no rows"):
                call()
        assert predictive_samples(model, guide, x[:1], num_samples=2).shape == (2, 1)  # one row is enough


def test_one_example_without_its_batch_dimension_is_named():
    """Before: "maps x of shape (3,) to (1,); it must give (3,) or (3, 1)", reading 3 features as 3 rows."""
    model, x, _ = _regressor()
    with pytest.raises(ModelSpecError, match=r"shape \(3,\) to \(1,\).*one example of 3 features, its batch "
                                             r"dimension is missing: give x\[None\]"):
        model(x[0])
    assert model(x[0][None]).shape == (1,)


def test_predictive_samples_refuses_an_autoguide_that_never_ran():
    """Before: torch's "t() expects a tensor with <= 2 dimensions, but self is 3D" from the network."""
    model, x, y = _regressor()
    guide = AutoNormal(model)
    with pyro.get_param_store().scope():
        with pytest.raises(ConfigError, match="the AutoNormal guide has never run.*train it first"):
            predictive_samples(model, guide, x, num_samples=2)
        assert guide.prototype_trace is None  # the refusal ran nothing
        guide(x, y)
        assert predictive_samples(model, guide, x, num_samples=2).shape == (2, 3)


def test_mc_dropout_of_no_rows_is_empty_without_a_warning():
    """Before: torch's "var(): degrees of freedom is <= 0" warning."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, var = mc_dropout_predict(net, torch.zeros(0, 3), num_samples=3)
    assert mean.shape == var.shape == (0, 1)
    assert mean.dtype == var.dtype == torch.float32


def test_an_autocallable_guide_that_ran_is_predicted_from():
    """reviewB: an ``AutoCallable`` (the user's own guide behind Pyro's autoguide interface) never gets a
    ``prototype_trace``, so the unrun-autoguide refusal refused it for ever, trained or not."""
    from pyro.infer.autoguide import AutoCallable

    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        return w * x.sum(-1)

    def guide_of_w(x):
        pyro.sample("w", dist.Delta(torch.tensor(2.0)))

    guide = AutoCallable(model, guide_of_w)
    x = torch.ones(3, 2)
    out = predictive_samples(model, guide, x, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.full((2, 3), 4.0))
