import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal

from hybridpgm.diagnostics import from_categorical, from_importance, from_mcmc, from_pyro_svi, from_svi
from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import Gibbs
from tests.diagnostics.conjugate import guide_with_width, model as local_model

X = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1])


def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x):
    pyro.sample("mu", dist.Normal(x.mean(), 1.0 / x.shape[0] ** 0.5))


def test_svi_round_trip_and_arviz_diagnostics():
    pyro.set_rng_seed(0)
    idata = from_svi(global_model, global_guide, X, num_samples=200)
    assert idata.posterior["mu"].shape == (1, 200)
    assert idata.posterior_predictive["x"].shape == (1, 200, 5)
    assert idata.log_likelihood["x"].shape == (1, 200, 5)
    np.testing.assert_allclose(idata.observed_data["x"].values, X.numpy())
    # the pointwise log-likelihood is log N(x_n; mu_s, 1)
    mu = torch.as_tensor(idata.posterior["mu"].values[0, :5])
    expected = dist.Normal(mu[:, None], 1.0).log_prob(X)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0, :5], expected.numpy(), rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
        assert np.isfinite(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan)))  # ArviZ 0.x / 1.x
        assert "mu" in az.summary(idata, kind="stats").index
        assert float(az.ess(idata)["mu"]) > 50


def test_svi_with_local_latents_keeps_their_shape():
    pyro.set_rng_seed(0)
    idata = from_svi(local_model, guide_with_width(1.0), X, num_samples=30)
    assert idata.posterior["z"].shape == (1, 30, 5)


def test_gibbs_mcmc_keeps_chains_for_rhat():
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7])))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), parents=["a"]))
    mcmc = MCMC(Gibbs(bn.model), num_samples=300, warmup_steps=20, num_chains=2, disable_progbar=True)
    mcmc.run({"b": torch.tensor([1])})
    idata = from_mcmc(mcmc)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 300
    exact = bn.posterior(["a"], {"b": torch.tensor([1])})["a"][0, 1].item()
    assert float(idata.posterior["a"].mean()) == pytest.approx(exact, abs=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(az.rhat(idata)["a"].max()) < 1.05


def test_importance_weights_and_samples():
    log_w = torch.randn(100, 3)
    idata = from_importance(log_w, {"z": torch.randn(100, 2)})
    assert idata.sample_stats["log_weight"].shape == (1, 100, 3)
    assert idata.posterior["z"].shape == (1, 100, 2)
    with pytest.raises(DataError, match="draws"):
        from_importance(log_w, {"z": torch.randn(99)})
    with pytest.raises(DataError, match="K or K x N"):
        from_importance(torch.zeros(2, 2, 2))


def test_categorical_posteriors_with_named_dims():
    probs = {"rain": torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]),
             "wet": torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])}
    idata = from_categorical(probs)
    assert idata.posterior["rain"].dims == ("chain", "draw", "row", "rain_state")
    assert idata.posterior["rain"].shape == (1, 1, 3, 2) and idata.posterior["wet"].shape == (1, 1, 3, 3)
    np.testing.assert_allclose(idata.posterior["rain"].values[0, 0], probs["rain"].numpy())
    assert from_categorical({"rain": torch.tensor([0.3, 0.7])}).posterior["rain"].shape == (1, 1, 1, 2)
    with pytest.raises(DataError, match="same number of evidence rows"):
        from_categorical({"rain": probs["rain"], "wet": torch.tensor([0.1, 0.3, 0.6])})
    with pytest.raises(DataError, match="'bad'"):
        from_categorical({"bad": torch.zeros(2, 2, 2)})


def two_latent_model(x):
    """Global ``mu`` and ``log_sigma``, so that every autoguide has something to fit."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, log_sigma.exp()), obs=x)


def hand_written_guide(x):
    loc = pyro.param("mu_loc", torch.tensor(0.0))
    pyro.sample("mu", dist.Normal(loc, 0.3))
    pyro.sample("log_sigma", dist.Normal(pyro.param("ls_loc", torch.tensor(0.0)), 0.3))


@pytest.mark.parametrize("make_guide", [AutoNormal, AutoDelta, AutoDiagonalNormal, lambda m: hand_written_guide],
                         ids=["AutoNormal", "AutoDelta", "AutoDiagonalNormal", "hand-written"])
def test_from_pyro_svi_keeps_the_model_sites_of_any_guide(make_guide):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = make_guide(two_latent_model)
    svi = SVI(two_latent_model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(100):
        svi.step(X)
    idata = from_pyro_svi(two_latent_model, guide, X, num_samples=100)
    assert sorted(idata.posterior.data_vars) == ["log_sigma", "mu"]  # no auxiliary guide site
    assert idata.posterior["mu"].shape == (1, 100)
    assert float(idata.posterior["mu"].mean()) == pytest.approx(float(X.mean()), abs=0.5)
    assert sorted(idata.log_likelihood.data_vars) == ["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "mu" in az.summary(idata, kind="stats").index
    pyro.clear_param_store()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_from_pyro_svi_names_a_bad_number_of_samples(bad):
    """Before: 0 gave a ZeroDivisionError, -1 and 2.5 raw torch errors, and True one draw."""
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=f"from_pyro_svi num_samples must be a positive integer, got {bad}"):
        from_pyro_svi(global_model, global_guide, X, num_samples=bad)


def test_from_pyro_svi_names_an_unknown_return_site():
    with pytest.raises(DataError, match="'nope'"):
        from_pyro_svi(global_model, global_guide, X, num_samples=5, return_sites=["nope"])


def test_arviz_summary_loo_ess_and_plot_trace_run_on_our_outputs():
    """The calls a notebook makes, under ArviZ 0.x (InferenceData) and 1.x (DataTree)."""
    import matplotlib

    matplotlib.use("Agg")  # pytest runs headless; this test owns its backend choice
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(global_model, global_guide, X, num_samples=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert "mu" in az.summary(idata).index
        assert np.isfinite(float(az.ess(idata)["mu"]))
        loo = az.loo(idata)
        assert np.isfinite(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan)))
        plotted = az.plot_trace(idata)
    assert plotted is not None
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("log_weights, match", [
    (torch.tensor([0.0, float("nan"), 1.0]), "NaN or \\+inf"),
    (torch.tensor([[0.0, 1.0], [float("inf"), 2.0]]), "NaN or \\+inf"),
    (torch.zeros(0), "K >= 1"),
    (torch.arange(5), "floating point, got dtype torch.int64"),
])
def test_from_importance_refuses_log_weights_that_are_not_finite_floats(log_weights, match):
    with pytest.raises(DataError, match=match):
        from_importance(log_weights)


def test_from_importance_keeps_a_zero_weight():
    log_weights = torch.tensor([0.5, float("-inf"), -1.0])
    kept = np.asarray(from_importance(log_weights)["sample_stats"]["log_weight"]).reshape(-1)
    np.testing.assert_array_equal(kept, log_weights.numpy())


@pytest.mark.parametrize("probabilities, match", [
    ({"a": torch.tensor([[0.5, 0.6], [0.5, 0.5]])}, "row\\(s\\) \\[0\\] sum to \\[1.1\\]"),
    ({"a": torch.tensor([[1.5, -0.5]])}, "negative or NaN probabilities in row\\(s\\) \\[0\\]"),
    ({"a": torch.tensor([[float("nan"), 1.0]])}, "negative or NaN"),
    ({"a": torch.tensor([[0, 1]])}, "floating-point probabilities, got dtype torch.int64"),
    ({}, "at least one variable"),
])
def test_from_categorical_refuses_rows_that_are_not_probability_vectors(probabilities, match):
    with pytest.raises(DataError, match=match):
        from_categorical(probabilities)


def test_from_categorical_accepts_float32_rounding():
    probs = torch.softmax(torch.randn(4, 1000, generator=torch.Generator().manual_seed(0)), -1)
    assert probs.dtype == torch.float32
    data = from_categorical({"a": probs})
    np.testing.assert_allclose(np.asarray(data["posterior"]["a"]).reshape(4, 1000), probs.numpy())


def test_make_inference_data_names_a_surplus_dim():
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match="variable 'x' in group 'posterior'.*\\(2, 10, 3\\) has 1 after"):
        make_inference_data({"posterior": {"x": np.zeros((2, 10, 3))}}, dims={"x": ["a", "b"]})
    with pytest.raises(DataError, match="group 'observed_data'.*\\(3,\\) has 1 after none"):
        make_inference_data({"observed_data": {"y": np.zeros(3)}}, dims={"y": ["a", "b"]})
    data = make_inference_data({"posterior": {"x": np.zeros((2, 10, 3))}}, dims={"x": ["a"]})
    assert "a" in data["posterior"]["x"].dims
