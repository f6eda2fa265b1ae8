"""ArviZ data of a Pyro model and guide after SVI: from_pyro_svi (hybridpgm/diagnostics/svi_data.py)."""

import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal

from hybridpgm.diagnostics import from_pyro_svi, from_svi
from hybridpgm.errors import DataError
from tests.diagnostics.arviz_groups import group_names
from tests.diagnostics.conjugate import guide_with_width, model as local_model
from tests.diagnostics.replay_models import plate_model as two_latent_model  # global latents: autoguides fit


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


@pytest.mark.filterwarnings("ignore:from_pyro_svi. the latent site")  # local latents: no loo
def test_svi_with_local_latents_keeps_their_shape():
    pyro.set_rng_seed(0)
    idata = from_svi(local_model, guide_with_width(1.0), X, num_samples=30)
    assert idata.posterior["z"].shape == (1, 30, 5)


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


@pytest.mark.filterwarnings("ignore:from_pyro_svi. the latent site")  # a VAE: no loo
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


# ---------------------------------------------------------------- obs_mask splits: a BayesNet with missing entries
PA, PB, PC = torch.tensor([0.3, 0.7]), torch.tensor([[0.8, 0.2], [0.1, 0.9]]), torch.tensor([[0.6, 0.4], [0.25, 0.75]])


BN_DATA = torch.tensor([[-1, 0, 1], [-1, 1, 0], [1, 1, 1], [0, -1, 1], [1, -1, 0]])  # -1: missing


def _chain_net():
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet()
    bn.add("a", cpd.Table(PA.tolist()))
    bn.add("b", cpd.Table(PB.tolist(), ["a"]))
    bn.add("c", cpd.Table(PC.tolist(), ["b"]))
    return bn


@pytest.mark.slow  # statistical: 800 draws against the exact posterior
@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # no continuous latent
def test_from_pyro_svi_takes_a_bayes_net_s_own_guide_and_reports_each_node_s_posterior():
    """Before: bn.guide refused the data ('BayesNet.guide is empty ...'), and with an empty guide the posterior
    held 'a_unobserved', whose entries in the rows where 'a' is observed were uniform noise."""
    bn = _chain_net()
    pyro.set_rng_seed(0)
    num_samples = 800
    idata = from_pyro_svi(bn.model, bn.guide, BN_DATA, num_samples=num_samples)
    assert set(idata.posterior.data_vars) == {"a", "b"}
    exact = bn.posterior(["a", "b"], evidence=bn.columns(BN_DATA))
    for node in ("a", "b"):
        draws = torch.as_tensor(idata.posterior[node].values[0])  # S x N
        assert draws.shape == (num_samples, len(BN_DATA))
        observed = BN_DATA[:, "abc".index(node)] >= 0
        assert (draws[:, observed] == BN_DATA[observed, "abc".index(node)]).all()  # the observed value, always
        frequency = draws.double().mean(0)
        p = exact[node][:, 1].double().detach()
        tolerance = 4 * (p * (1 - p) / num_samples).sqrt() + 1e-9  # 4 standard errors
        assert ((frequency - p).abs() <= tolerance).all(), (node, frequency, p)


@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # no continuous latent
def test_from_pyro_svi_gives_a_masked_entry_no_log_likelihood():
    """Before: the missing entries of 'a_observed' scored log p(a = placeholder), as if observed; then 0, which
    az.loo still counted as a data point.  Now the log-likelihood of node 'a' lists its observed rows only."""
    bn = _chain_net()
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(bn.model, bn.guide, BN_DATA, num_samples=20)
    log_lik = torch.as_tensor(idata.log_likelihood["a"].values[0])
    observed = BN_DATA[:, 0] >= 0
    torch.testing.assert_close(log_lik, PA.log()[BN_DATA[observed, 0]].expand(20, -1))
    # b's pointwise log-likelihood sums its missing parent out: log p(b_n) where a_n is missing
    log_lik_b = torch.as_tensor(idata.log_likelihood["b"].values[0])
    assert log_lik_b.shape == (20, 3)  # b is missing in rows 3 and 4
    torch.testing.assert_close(log_lik_b[0, 0], (PA @ PB[:, 0]).log())


def obs_mask_model(y, mask):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)


def obs_mask_guide(y, mask):
    mu = pyro.sample("mu", dist.Normal(1.0, 0.1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y_unobserved", dist.Normal(mu, 1.0))


def test_from_pyro_svi_reports_a_pyro_obs_mask_site_as_its_node():
    y, mask = torch.tensor([0.5, 9.0, 1.5]), torch.tensor([True, False, True])  # 9.0: a placeholder
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(obs_mask_model, obs_mask_guide, y, mask, num_samples=200)
    assert set(idata.posterior.data_vars) == {"mu", "y"}
    draws = torch.as_tensor(idata.posterior["y"].values[0])
    assert (draws[:, mask] == y[mask]).all()
    assert abs(float(draws[:, 1].mean()) - 1.0) < 0.3 and float(draws[:, 1].std()) > 0.5  # drawn, ~N(mu, 1)
    assert torch.as_tensor(idata.log_likelihood["y"].values[0]).shape == (200, 2)  # the observed entries
    with pytest.raises(DataError, match=r"'y_unobserved' \(the missing entries of 'y': ask for 'y'\)"):
        from_pyro_svi(obs_mask_model, obs_mask_guide, y, mask, num_samples=5, return_sites=["y_unobserved"])


def test_from_pyro_svi_is_isolated_from_the_caller_s_handlers():
    pyro.set_rng_seed(0)
    plain = from_pyro_svi(global_model, global_guide, X, num_samples=20)
    pyro.set_rng_seed(0)
    with pyro.poutine.trace() as outer, pyro.poutine.scale(scale=3.0), pyro.plate("rows", 5, dim=-1):
        got = from_pyro_svi(global_model, global_guide, X, num_samples=20)
    np.testing.assert_array_equal(got.log_likelihood["x"].values, plain.log_likelihood["x"].values)
    np.testing.assert_array_equal(got.posterior["mu"].values, plain.posterior["mu"].values)
    assert not {"mu", "x", "data"} & set(outer.trace.nodes)


def mrf_ab():
    """``a -- b``, two binary variables, with a unary factor on ``a``; ``A`` observes ``a`` in four rows."""
    from hybridpgm.graphs import MarkovNet

    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    mrf.add_factor("ua", ["a"], torch.tensor([1.5, 0.0]))
    return mrf


A = torch.tensor([0, 1, 0, 0])


def test_from_pyro_svi_leaves_markov_net_placeholder_sites_out_and_keeps_the_posterior():
    """Before: ``a``'s log-likelihood was ``-log 2`` in every row and draw (its placeholder ``Categorical(logits=0)``;
    the likelihood lies in ``pyro.factor`` sites, which are left out) and its posterior predictive was uniform."""
    mrf = mrf_ab()
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match=r"\['a'\].*placeholders.*mrf\.distribution") as record:
        idata = from_pyro_svi(lambda a: mrf.model({"a": a}), lambda a: None, A, num_samples=400)
    assert not [w for w in record if "same pointwise log-likelihood" in str(w.message)]
    assert group_names(idata) == ["posterior"]
    # b's draws are from p(b | a_n), the factors counted
    exact = mrf.marginals(evidence={"a": A})["b"][:, 1].numpy()
    drawn = idata.posterior["b"].values[0].mean(0)
    np.testing.assert_allclose(drawn, exact, atol=4 * 0.5 / 400 ** 0.5)
    assert not np.allclose(exact, 0.5, atol=0.1)  # a uniform placeholder would not give these


def joint_normal_and_mrf_model(x, a, mrf):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
    mrf.model({"a": a}, prefix="mrf_")  # not "mrf/": ArviZ 1.x cannot hold "/" in a name


def test_from_pyro_svi_keeps_real_data_next_to_a_markov_net_placeholder():
    mrf = mrf_ab()
    x = X[:4]
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match=r"\['mrf_a'\]"):
        idata = from_pyro_svi(joint_normal_and_mrf_model, lambda x, a, mrf: global_guide(x), x, A, mrf,
                              num_samples=50)
    for group in ("observed_data", "posterior_predictive", "log_likelihood"):
        assert list(idata[group].data_vars) == ["x"], group
    mu = idata.posterior["mu"].values[0]
    expected = dist.Normal(torch.as_tensor(mu)[:, None], 1.0).log_prob(x).numpy()
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected, rtol=1e-5)
    assert idata.posterior["mrf_b"].shape == (1, 50, 4)


def test_from_pyro_svi_gives_the_exact_log_likelihood_of_a_markov_net_distribution_site():
    """The site the placeholder warning points to: ``mrf.distribution()`` observed as one site."""
    mrf = mrf_ab()
    y = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]])

    def model(y):
        with pyro.plate("data", y.shape[0]):
            pyro.sample("mrf", mrf.distribution(), obs=y)

    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no latent: every draw has the same log-likelihood
        idata = from_pyro_svi(model, lambda y: None, y, num_samples=3)
    exact = mrf.log_prob({"a": y[:, 0], "b": y[:, 1]}).numpy()
    np.testing.assert_allclose(idata.log_likelihood["mrf"].values[0], np.broadcast_to(exact, (3, 4)), rtol=1e-5)


def test_from_pyro_svi_warns_of_no_placeholder_in_a_plain_model_with_factor_sites():
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = from_pyro_svi(deterministic_and_factor_model, global_guide, X, num_samples=20)
    assert list(idata.log_likelihood.data_vars) == ["x"]


def test_from_pyro_svi_broadcasts_a_scalar_observation_across_its_plate():
    """The audit (t12_bcast.py): obs=torch.tensor(0.5) under pyro.plate("data", 10) runs under plain Predictive,
    but from_pyro_svi raised a raw RuntimeError "shape '[1, 20]' is invalid for input of size 200".  The value
    is now broadcast as Pyro broadcasts it: one observation, log-likelihood and replicate per plate element."""
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 10):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def guide(y):
        pyro.sample("mu", dist.Normal(0.4, 0.3))

    pyro.set_rng_seed(0)
    idata = from_pyro_svi(model, guide, torch.tensor(0.5), num_samples=20)
    assert np.asarray(idata["observed_data"]["y"]).tolist() == [0.5] * 10
    assert idata["posterior_predictive"]["y"].shape == (1, 20, 10)
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))[0]
    expected = dist.Normal(mu[:, None], 1.0).log_prob(torch.full((10,), 0.5)).numpy()
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["y"])[0], expected, rtol=1e-6)


def test_from_pyro_svi_names_an_observation_larger_than_its_distribution():
    """A value with dims its distribution lacks (no plate, no to_event) has no likelihood per element: a
    DataError naming the site and both shapes, where a raw reshape error came before."""
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(DataError, match=r"observed site 'y': its value of shape \(5,\) does not broadcast to its "
                                        r"distribution's batch \+ event shape \(\)"):
        from_pyro_svi(model, global_guide, X, num_samples=4)
