import math
import re
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


@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # AutoDelta's
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


def deterministic_and_factor_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    pyro.deterministic("twice_mu", 2 * mu)
    pyro.factor("shrink", -0.5 * mu**2)
    with pyro.plate("data", x.shape[0]):
        pyro.deterministic("residual", x - mu)
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_from_pyro_svi_puts_deterministic_sites_in_the_posterior_and_leaves_factors_out():
    """Before: ``twice_mu``, ``residual`` and ``shrink`` (observed sites to Pyro) were data in ``observed_data``,
    ``posterior_predictive`` and ``log_likelihood``, so ``az.loo`` summed them in."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(deterministic_and_factor_model, global_guide, X, num_samples=50)
    for group in ("observed_data", "posterior_predictive", "log_likelihood"):
        assert sorted(idata[group].data_vars) == ["x"], group
    assert sorted(idata.posterior.data_vars) == ["mu", "residual", "twice_mu"]
    mu = idata.posterior["mu"].values
    assert idata.posterior["twice_mu"].shape == (1, 50)
    np.testing.assert_allclose(idata.posterior["twice_mu"].values, 2 * mu, rtol=1e-6)
    assert idata.posterior["residual"].shape == (1, 50, 5)
    np.testing.assert_allclose(idata.posterior["residual"].values, X.numpy() - mu[..., None], rtol=1e-5, atol=1e-6)
    kept = from_pyro_svi(deterministic_and_factor_model, global_guide, X, num_samples=5, return_sites=["twice_mu"])
    assert sorted(kept.posterior.data_vars) == ["twice_mu"]


def factor_only_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    pyro.deterministic("mu_again", mu)
    pyro.factor("fit", dist.Normal(mu, 1.0).log_prob(x).sum())


def test_from_pyro_svi_counts_no_factor_or_deterministic_site_as_data():
    with pytest.raises(DataError, match="no observed sample site"):
        from_pyro_svi(factor_only_model, global_guide, X, num_samples=5)


LOCS, WEIGHTS, SHIFT_LOC, SHIFT_SCALE = torch.tensor([-2.0, 2.0]), torch.tensor([0.3, 0.7]), 0.3, 0.6
MIXTURE_X = torch.tensor([-1.2, -0.6, 0.0, 0.4, 1.0, 1.4])


def mixture_model(x, record_centre=False):
    """A two-component mixture whose components share a shift; ``z`` is enumerated, not in the guide."""
    shift = pyro.sample("shift", dist.Normal(0.0, 3.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        if record_centre:
            pyro.deterministic("centre", LOCS[z] + shift)
        pyro.sample("x", dist.Normal(LOCS[z] + shift, 1.0), obs=x)


def mixture_guide(x, record_centre=False):
    pyro.sample("shift", dist.Normal(SHIFT_LOC, SHIFT_SCALE))


def test_from_pyro_svi_draws_enumerated_sites_from_their_conditional_posterior():
    """Before: ``z`` came from its prior (Predictive runs the model unconditioned on the data for sites the guide
    lacks), labelled posterior.  Each draw of ``z`` must follow p(z_n | x_n, shift_s) for the same draw's shift:
    p(z_n = 1 | x_n, shift) = w_1 N(x_n; 2 + shift, 1) / sum_k w_k N(x_n; loc_k + shift, 1)."""
    pyro.set_rng_seed(0)
    num_samples = 1000
    idata = from_pyro_svi(mixture_model, mixture_guide, MIXTURE_X, num_samples=num_samples)
    assert sorted(idata.posterior.data_vars) == ["shift", "z"]
    assert idata.posterior["z"].shape == (1, num_samples, 6)
    shift = torch.as_tensor(idata.posterior["shift"].values[0])
    z = torch.as_tensor(idata.posterior["z"].values[0])
    logits = WEIGHTS.log() + dist.Normal(LOCS + shift[:, None, None], 1.0).log_prob(MIXTURE_X[:, None])
    p1 = logits.softmax(-1)[..., 1]  # S x N exact conditional probabilities
    # independent Bernoulli draws: the standardized sum of (indicator - p) per data point is ~ N(0, 1) (the data
    # keep p away from 0 and 1, so each variance sum is > 20 and the normal approximation holds)
    variance = (p1 * (1 - p1)).sum(0)
    assert variance.min() > 20, variance
    score = ((z == 1).double() - p1).sum(0) / variance.sqrt()
    assert score.abs().max() < 4.0, score  # 6 points: false alarm probability < 4e-4
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], mixture_log_lik(shift).numpy(), rtol=1e-5)
    assert idata.posterior_predictive["x"].shape == (1, num_samples, 6)


def mixture_log_lik(shift):
    """``S x N`` exact pointwise log-likelihood of the mixture given each draw's shift, ``z`` summed out."""
    return torch.logsumexp(WEIGHTS.log() + dist.Normal(LOCS + shift[:, None, None], 1.0).log_prob(MIXTURE_X[:, None]),
                           dim=-1)


def test_the_log_likelihood_sums_a_local_enumerated_site_out_as_the_model_does():
    """Before, it was log p(x_n | shift, z_n) at a draw of z_n that had seen x_n (from infer_discrete), which
    made az.loo about 11 nats too optimistic on a mixture; LOO needs log p(x_n | shift), z_n summed out."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(mixture_model, mixture_guide, MIXTURE_X, num_samples=50)
    shift = torch.as_tensor(idata.posterior["shift"].values[0])
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], mixture_log_lik(shift).numpy(), rtol=1e-6)
    z = torch.as_tensor(idata.posterior["z"].values[0])
    conditional = dist.Normal(LOCS[z] + shift[:, None], 1.0).log_prob(MIXTURE_X)
    assert (conditional.numpy() > idata.log_likelihood["x"].values[0]).mean() > 0.5  # what it was: optimistic


def test_from_pyro_svi_computes_deterministic_sites_from_the_drawn_discrete_sites():
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(mixture_model, mixture_guide, MIXTURE_X, num_samples=20, record_centre=True)
    assert sorted(idata.posterior.data_vars) == ["centre", "shift", "z"]
    shift = torch.as_tensor(idata.posterior["shift"].values[0])
    z = torch.as_tensor(idata.posterior["z"].values[0])
    np.testing.assert_allclose(idata.posterior["centre"].values[0], (LOCS[z] + shift[:, None]).numpy(), rtol=1e-6)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], mixture_log_lik(shift).numpy(), rtol=1e-5)


GLOBAL_MEANS = torch.tensor([-1.0, 1.0])


def global_switch_model(x):
    """A global enumerated switch ``c`` outside the plate: p(c = 1 | x) is exact in closed form."""
    c = pyro.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(GLOBAL_MEANS[c.long()], 2.0), obs=x)


def test_from_pyro_svi_draws_a_global_enumerated_site_from_its_posterior():
    """Before: ``c`` came from its prior, p = 0.5, while its posterior has p = 0.29 (4 standard errors:
    0.09)."""
    pyro.set_rng_seed(0)
    x = torch.tensor([-0.5, -1.5, 0.2])
    num_samples = 400
    idata = from_pyro_svi(global_switch_model, lambda x: None, x, num_samples=num_samples)
    c = idata.posterior["c"].values[0]
    assert c.shape == (num_samples,)
    log_p = dist.Normal(GLOBAL_MEANS[:, None], 2.0).log_prob(x).sum(-1)
    p1 = float(log_p.softmax(0)[1])
    assert abs(c.mean() - p1) < 4 * (p1 * (1 - p1) / num_samples) ** 0.5, (c.mean(), p1)


def test_from_pyro_svi_refuses_sequential_enumeration_of_a_site_the_guide_lacks():
    from hybridpgm.errors import ConfigError

    def model(x):
        c = pyro.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "sequential"})
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    with pytest.raises(ConfigError, match="\\['c'\\].*'sequential'"):
        from_pyro_svi(model, lambda x: None, X, num_samples=5)


def subsampled_model(x, subsample_size=None, subsample=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size, subsample=subsample) as rows:
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x[rows])


def subsampled_guide(x, subsample_size=None, subsample=None):
    pyro.sample("mu", dist.Normal(x.mean(), 0.3))


@pytest.mark.parametrize("options", [{"subsample_size": 2}, {"subsample": torch.tensor([0, 3])}],
                         ids=["subsample_size", "subsample"])
def test_from_pyro_svi_refuses_a_subsampling_plate(options):
    """Before: every trace drew other rows, so log_likelihood, observed_data and posterior_predictive rows did not
    line up."""
    with pytest.raises(DataError, match="plate 'data' subsamples 2 of its 5 rows.*torch.arange\\(5\\)"):
        from_pyro_svi(subsampled_model, subsampled_guide, X, num_samples=5, **options)


def test_from_pyro_svi_accepts_a_plate_given_every_row():
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(subsampled_model, subsampled_guide, X, num_samples=5, subsample=torch.arange(5))
    np.testing.assert_allclose(idata.observed_data["x"].values, X.numpy())
    assert idata.log_likelihood["x"].shape == (1, 5, 5)


def delta_scale_guide(x):
    pyro.sample("mu", dist.Normal(0.1, 0.3))
    pyro.sample("log_sigma", dist.Delta(torch.tensor(0.5)))


def test_from_pyro_svi_conditions_on_every_latent_when_returning_a_few():
    """Before: only the ``return_sites`` were drawn from the guide; ``log_sigma`` came from its prior in the
    log-likelihood."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(two_latent_model, delta_scale_guide, X, num_samples=20, return_sites=["mu"])
    assert sorted(idata.posterior.data_vars) == ["mu"]
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    expected = dist.Normal(mu[:, None], math.exp(0.5)).log_prob(X)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected.numpy(), rtol=1e-5)


def test_from_pyro_svi_and_check_vi_leave_a_batch_norm_s_running_statistics_alone():
    """Before, each diagnostic of a batch-norm VAE in training mode updated its running statistics."""
    from hybridpgm import VAE
    from hybridpgm.diagnostics import check_vi

    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=[5], batch_norm=True)
    x = torch.rand(8, 6).bernoulli()
    before = {name: buf.clone() for name, buf in vae.named_buffers()}
    from_pyro_svi(vae.model, vae.guide, x, num_samples=3)
    check_vi(vae.model, vae.guide, x, num_samples=40)
    assert all(torch.equal(before[name], buf) for name, buf in vae.named_buffers())


def test_from_importance_takes_samples_as_lists_and_names_a_wrong_count():
    """Before, a list of draws raised Python's AttributeError ('list' object has no attribute 'shape')."""
    log_weights = torch.randn(3, dtype=torch.float64)
    idata = from_importance(log_weights, {"z": [0.5, 1.0, 2.0]})
    assert np.asarray(idata.posterior["z"]).reshape(-1).tolist() == [0.5, 1.0, 2.0]
    for samples in ({"z": [1, 2]}, {"z": 1.0}):
        with pytest.raises(DataError, match="samples must have 3 draws like the log-weights"):
            from_importance(log_weights, samples)
    with pytest.raises(DataError, match="samples must be tensors or arrays of numbers"):
        from_importance(log_weights, {"z": ["a", "b", "c"]})


def _variables(data, group: str) -> list[str]:
    return sorted(data[group].data_vars)


def test_from_pyro_svi_refuses_a_site_named_like_a_sample_dim():
    """A latent site named 'draw' (a card or urn model) became the 'draw' coordinate: its draws were lost."""
    def urn_model(y):
        m = pyro.sample("draw", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(m, 1.0), obs=y)

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormal(urn_model)
    guide(X)
    with pytest.raises(DataError, match="variable 'draw' in group 'posterior' has the name of ArviZ's sample dim"):
        from_pyro_svi(urn_model, guide, X, num_samples=5)
    pyro.clear_param_store()


@pytest.mark.parametrize("probabilities, dims", [
    ({"x": [[0.3, 0.7]], "x_state": [[0.2, 0.3, 0.5]]},
     {"x": ("row", "x_state_"), "x_state": ("row", "x_state_state")}),
    ({"row": [[0.3, 0.7]]}, {"row": ("row_", "row_state")}),
    ({"result": [[0.2, 0.8]], "row_": [[0.5, 0.5]], "row": [[1.0, 0.0]]},
     {"result": ("row__", "result_state"), "row_": ("row__", "row__state"), "row": ("row__", "row_state")}),
], ids=["x-and-x_state", "row", "row-and-row_"])
def test_from_categorical_keeps_every_node_whatever_its_name(probabilities, dims):
    """A node named like a dim of another ('x_state' beside 'x', or 'row') became a coordinate and was lost."""
    data = from_categorical({k: torch.tensor(v) for k, v in probabilities.items()})
    assert _variables(data, "posterior") == sorted(probabilities)
    for name, values in probabilities.items():
        assert data["posterior"][name].dims == ("chain", "draw") + dims[name]
        np.testing.assert_allclose(data["posterior"][name].values[0, 0], values)


@pytest.mark.parametrize("name", ["chain", "draw"])
def test_from_categorical_refuses_a_node_named_like_a_sample_dim(name):
    with pytest.raises(DataError, match=f"variable '{name}' in group 'posterior'.*sample dim"):
        from_categorical({name: torch.tensor([[0.3, 0.7]])})


@pytest.mark.parametrize("groups, dims, match", [
    ({"posterior": {"a": np.zeros((1, 4, 3)), "obs": np.zeros((1, 4))}}, {"a": ["obs"]},
     "variable 'obs' in group 'posterior' has the name of a dim of variable 'a'"),
    ({"posterior": {"a": np.zeros((1, 4, 3)), "a_dim_0": np.zeros((1, 4))}}, None,
     "variable 'a_dim_0' in group 'posterior' has the name of a dim of variable 'a'"),
    ({"observed_data": {"y": np.zeros(3), "y_dim_0": np.zeros(3)}}, None, "variable 'y_dim_0' in group "),
    ({"sample_stats": {"chain": np.zeros((1, 4))}}, None, "variable 'chain' in group 'sample_stats'"),
], ids=["named-dim", "default-dim", "observed-default-dim", "chain"])
def test_make_inference_data_refuses_a_variable_named_like_a_dim_of_its_group(groups, dims, match):
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match=match):
        make_inference_data(groups, dims=dims)


def test_make_inference_data_allows_sample_dim_names_in_unsampled_groups():
    from hybridpgm.diagnostics import make_inference_data

    data = make_inference_data({"posterior": {"a": np.zeros((1, 4))}, "constant_data": {"draw": np.arange(3.0)}})
    assert _variables(data, "constant_data") == ["draw"]


def test_make_inference_data_takes_dims_of_predictions_constant_data():
    """Its arrays have no (chain, draw) dims, but it was missing from the unsampled groups, so valid dims were
    refused; and ArviZ 1.x took the predictions groups' dims from pred_dims only, dropping them."""
    from hybridpgm.diagnostics import make_inference_data

    groups = {"predictions": {"y": np.zeros((1, 4, 5))}, "predictions_constant_data": {"x": np.arange(5.0)}}
    data = make_inference_data(groups, dims={"x": ["obs"], "y": ["obs"]}, coords={"obs": np.arange(10, 15)})
    assert data["predictions_constant_data"]["x"].dims == ("obs",)
    assert data["predictions"]["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(data["predictions"]["obs"].values, np.arange(10, 15))


@pytest.mark.parametrize("group", ["posteriour", "log_prior", "samples"])
def test_make_inference_data_refuses_a_group_arviz_0_would_drop(group):
    """ArviZ 0.x's from_dict dropped an unknown (or misspelt) group without a word; ArviZ 1.x kept it."""
    from hybridpgm.diagnostics import make_inference_data
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=f"unknown ArviZ group\\(s\\) \\['{group}'\\]"):
        make_inference_data({group: {"a": np.zeros((1, 5))}})


def test_make_inference_data_keeps_warmup_groups():
    """Both ArviZ generations drop warmup_* groups unless told to save them."""
    from hybridpgm.diagnostics import make_inference_data

    data = make_inference_data({"posterior": {"a": np.zeros((1, 5))}, "warmup_posterior": {"a": np.ones((1, 3))}})
    assert data["warmup_posterior"]["a"].shape == (1, 3)


@pytest.mark.parametrize("group", ["posterior", "log_likelihood", "sample_stats"])
@pytest.mark.parametrize("shape", [(), (5,)])
def test_make_inference_data_refuses_a_sampled_array_without_chain_and_draw(group, shape):
    """ArviZ 0.x read a K array as one chain of K draws (a scalar as one draw), ArviZ 1.x raised a bare
    ValueError."""
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match=f"variable 'a' in group '{group}' has shape {re.escape(str(shape))}"):
        make_inference_data({group: {"a": np.zeros(shape)}})


def test_from_mcmc_refuses_an_mcmc_that_has_not_run_and_a_dict_of_samples():
    """An MCMC that has not run gave an empty object (KeyError on its posterior); get_samples()'s dict a raw
    AttributeError."""
    from pyro.infer import NUTS

    mcmc = MCMC(NUTS(global_model), num_samples=5, warmup_steps=2, disable_progbar=True)
    with pytest.raises(DataError, match="holds no samples: call mcmc.run"):
        from_mcmc(mcmc)
    with pytest.raises(DataError, match="takes a pyro.infer.MCMC run, got dict.*make_inference_data"):
        from_mcmc({"mu": torch.randn(2, 5)})


def test_from_pyro_svi_warns_that_a_point_estimate_guide_cannot_feed_loo():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoDelta(global_model)
    guide(X)
    with pytest.warns(UserWarning, match="every posterior draw has the same pointwise log-likelihood"):
        data = from_pyro_svi(global_model, guide, X, num_samples=5)
    assert data["posterior"]["mu"].shape == (1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_pyro_svi(global_model, global_guide, X, num_samples=5)  # draws that vary: no warning
    pyro.clear_param_store()


def test_bfloat16_tensors_become_arviz_data():
    """Before: torch's raw TypeError 'Got unsupported ScalarType BFloat16' from every converter."""
    from hybridpgm.diagnostics import make_inference_data

    lw = torch.randn(40, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    data = from_importance(lw, {"z": lw})
    np.testing.assert_array_equal(data["sample_stats"]["log_weight"].values[0], lw.float().numpy())
    np.testing.assert_array_equal(data["posterior"]["z"].values[0], lw.float().numpy())
    probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.bfloat16)
    np.testing.assert_array_equal(from_categorical({"x": probs})["posterior"]["x"].values[0, 0], probs.float().numpy())
    assert make_inference_data({"posterior": {"a": lw.reshape(1, 40)}})["posterior"]["a"].dtype == np.float32
