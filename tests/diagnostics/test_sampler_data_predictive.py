"""from_mcmc's explicit model arguments and posterior predictive (hybridpgm/diagnostics/sampler_data.py).

Before, from_mcmc read Pyro's private ``mcmc._args``/``mcmc._kwargs`` with no way to pass the arguments (an MCMC
without them replayed the model with none: a raw TypeError), and gave no ``posterior_predictive`` group, so
``az.plot_ppc`` had nothing to plot."""

import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from hybridpgm.diagnostics import from_mcmc
from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import Gibbs
from tests.diagnostics.arviz_groups import group_names
from tests.diagnostics.test_sampler_data import _nuts_run, global_model

Y = torch.linspace(-1.0, 3.0, 12)


def scaled_model(x, *, scale):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, scale), obs=x)


@pytest.fixture(scope="module")
def global_run():
    """One NUTS run of ``global_model`` (two chains), read (never changed) by the two tests that took the same
    seeded run each; the tests that drop its arguments make their own."""
    return _nuts_run(global_model, Y)


def _forget_the_arguments(mcmc):
    """An MCMC object that does not record its run's arguments (Pyro's private attributes, which a future Pyro
    may drop)."""
    mcmc._args = mcmc._kwargs = None
    return mcmc


def test_the_models_arguments_can_be_passed_explicitly():
    mcmc = _forget_the_arguments(_nuts_run(global_model, Y))
    idata = from_mcmc(mcmc, model_args=(Y,))
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["x"]),
                               dist.Normal(mu[..., None], 1.0).log_prob(Y).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(idata["observed_data"]["x"]), Y.numpy())


def test_keyword_arguments_alone_and_given_arguments_win_over_the_recorded_ones():
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcmc = MCMC(pyro.infer.NUTS(scaled_model), num_samples=40, warmup_steps=20, disable_progbar=True)
        mcmc.run(x=Y, scale=1.0)
    mu = torch.as_tensor(np.asarray(from_mcmc(mcmc)["posterior"]["mu"]))
    recorded = np.asarray(from_mcmc(mcmc)["log_likelihood"]["x"])
    np.testing.assert_allclose(recorded, dist.Normal(mu[..., None], 1.0).log_prob(Y).numpy(), rtol=1e-6)
    wider = np.asarray(from_mcmc(mcmc, model_kwargs={"x": Y, "scale": 2.0})["log_likelihood"]["x"])
    np.testing.assert_allclose(wider, dist.Normal(mu[..., None], 2.0).log_prob(Y).numpy(), rtol=1e-6)


def test_an_mcmc_without_recorded_arguments_names_model_args():
    mcmc = _forget_the_arguments(_nuts_run(global_model, Y, chains=1))
    with pytest.raises(ConfigError, match=r"model_args=\(\.\.\.\)"):
        from_mcmc(mcmc)
    with pytest.raises(ConfigError, match=r"model_args=\(\.\.\.\)"):
        from_mcmc(mcmc, log_likelihood=False, posterior_predictive=True)
    assert "log_likelihood" not in group_names(from_mcmc(mcmc, log_likelihood=False))  # nothing to replay
    with pytest.raises(ConfigError, match="model_args must be a tuple or list.*got Tensor"):
        from_mcmc(mcmc, model_args=Y)
    with pytest.raises(ConfigError, match="model_kwargs must be a dict.*got tuple"):
        from_mcmc(mcmc, model_kwargs=(Y,))
    with pytest.raises(ConfigError, match="posterior_predictive must be True .* got 10"):
        from_mcmc(mcmc, model_args=(Y,), posterior_predictive=10)
    with pytest.raises(ConfigError, match=r"from_mcmc generator must be a torch.Generator or None \(or, deprecated, "
                                          r"an int seed\), got float 0.5"):
        from_mcmc(mcmc, model_args=(Y,), generator=0.5)


def test_the_posterior_predictive_replicates_each_draw_reproducibly_leaving_the_global_generator_alone(global_run):
    mcmc = global_run
    state = torch.get_rng_state()
    idata = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    replicates = torch.as_tensor(np.asarray(idata["posterior_predictive"]["x"]))
    assert replicates.shape == (2, 60, 12)
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    noise = replicates - mu[..., None]  # y~ = mu + N(0, 1) given each draw: 1440 standard normal values
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1.0) < 0.1
    same = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(5))
    again = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(np.asarray(same["posterior_predictive"]["x"]),
                                  np.asarray(again["posterior_predictive"]["x"]))
    assert not np.array_equal(np.asarray(same["posterior_predictive"]["x"]), replicates.numpy())
    only = from_mcmc(mcmc, log_likelihood=False, posterior_predictive=True, generator=torch.Generator().manual_seed(4))
    assert {"posterior_predictive", "observed_data"} <= set(group_names(only))
    assert "log_likelihood" not in group_names(only)
    np.testing.assert_array_equal(np.asarray(only["posterior_predictive"]["x"]), replicates.numpy())


def test_the_posterior_predictive_of_a_gibbs_run_on_a_bayes_net():
    """a -> b, b = 1 observed: p(a=1 | b=1) = 0.56 / 0.59 and the predictive p(b~=1) = 0.949 * 0.8 + 0.051 * 0.1
    = 0.764 (sd of the estimate over 600 correlated draws about 0.02)."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7])))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), parents=["a"]))
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_chains=2 is more than available_cpu=1"
        mcmc = MCMC(Gibbs(bn.model), num_samples=300, warmup_steps=20, num_chains=2, disable_progbar=True)
        mcmc.run({"b": torch.tensor([1])})
    idata = from_mcmc(mcmc, posterior_predictive=True)
    replicates = np.asarray(idata["posterior_predictive"]["b"])
    assert replicates.shape[:2] == (2, 300)
    a = np.asarray(idata["posterior"]["a"]).reshape(2, 300)
    expected = (0.56 / 0.59) * 0.8 + (0.03 / 0.59) * 0.1
    assert float(replicates.mean()) == pytest.approx(expected, abs=0.06)
    assert float(replicates.reshape(2, 300)[a == 0].mean()) < 0.4  # each replicate follows its own draw of a


def test_arviz_loo_summary_and_plot_ppc_run_on_the_result(global_run):
    """The calls of a notebook on an MCMC run, with the posterior predictive (ArviZ 0.x and 1.x; ArviZ 1.x has no
    ``plot_ppc``, its plots live in arviz-plots), and the group's layout, which the plots read, under both."""
    import matplotlib

    matplotlib.use("Agg")  # pytest runs headless; this test owns its backend choice
    idata = from_mcmc(global_run, posterior_predictive=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "mu" in az.summary(idata).index
        loo = az.loo(idata)
        assert np.isfinite(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan)))
        if hasattr(az, "plot_ppc"):  # ArviZ 0.x
            assert az.plot_ppc(idata, num_pp_samples=20) is not None
    predictive, observed = idata["posterior_predictive"], idata["observed_data"]  # both versions
    assert set(predictive.data_vars) == set(observed.data_vars) == {"x"}  # global_model's observed site
    assert predictive["x"].shape[2:] == observed["x"].shape  # chain x draw x the observed shape
    import matplotlib.pyplot as plt

    plt.close("all")
