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
from tests.diagnostics.conjugate import guide_with_width, model as local_model
from tests.diagnostics.replay_models import plate_model as two_latent_model  # global latents: autoguides fit
from tests.diagnostics.svi_models import X, deterministic_and_factor_model, global_guide, global_model


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


def test_from_pyro_svi_is_isolated_from_the_caller_s_handlers():
    pyro.set_rng_seed(0)
    plain = from_pyro_svi(global_model, global_guide, X, num_samples=20)
    pyro.set_rng_seed(0)
    with pyro.poutine.trace() as outer, pyro.poutine.scale(scale=3.0), pyro.plate("rows", 5, dim=-1):
        got = from_pyro_svi(global_model, global_guide, X, num_samples=20)
    np.testing.assert_array_equal(got.log_likelihood["x"].values, plain.log_likelihood["x"].values)
    np.testing.assert_array_equal(got.posterior["mu"].values, plain.posterior["mu"].values)
    assert not {"mu", "x", "data"} & set(outer.trace.nodes)


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
