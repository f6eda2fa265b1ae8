"""Sites observed in some entries only (Pyro's ``obs_mask``, a BayesNet's missing entries, ``poutine.mask``) in
the ArviZ data of from_mcmc and from_pyro_svi (hybridpgm/diagnostics/masked_data.py).

Before, the data groups held Pyro's ``"y_observed"`` with every entry: ``observed_data`` kept the placeholders of
the missing entries (az.plot_ppc and az.loo_pit read them as data), the log-likelihood was 0 there (az.loo counted
them: n_data_points too high, its SE inflated, k-hat = inf at each), and from_mcmc's posterior held
``"y_unobserved"``, whose entries where ``y`` is observed are masked out of the model (noise)."""

import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from hybridpgm.diagnostics import from_mcmc, from_pyro_svi, make_inference_data
from hybridpgm.errors import DiagnosticsWarning
from tests.diagnostics.test_sampler_data import _nuts_run
from tests.diagnostics.svi_models import BN_DATA, PA, _chain_net, obs_mask_guide, obs_mask_model

Y = torch.tensor([0.5, 9.0, 1.5, -0.3, 9.0, 2.0])  # 9.0: placeholders of the missing entries
MASK = torch.tensor([True, False, True, True, False, True])


def _elpd(loo) -> float:
    return float(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan)))


def _se(loo) -> float:
    return float(loo.se)


def _p_loo(loo) -> float:
    """The effective number of parameters: ``p_loo`` in ArviZ 0.x; ArviZ 1.x names it ``p`` and keeps the
    pointwise ``p_loo_i``, whose sum it is."""
    for name in ("p_loo", "p"):
        if hasattr(loo, name):
            return float(getattr(loo, name))
    return float(np.sum(np.asarray(loo.p_loo_i)))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _check_the_data_groups(idata, log_lik_expected: np.ndarray):
    """The checks an ArviZ user's calls rely on, under ArviZ 0.x and 1.x: one variable 'y' of the observed entries
    in the three data groups, the same loo as the observed entries' own log-likelihood, and (ArviZ 0.x)
    az.plot_ppc, az.loo_pit and az.waic on them."""
    reference = make_inference_data({"log_likelihood": {"y": log_lik_expected}})
    loo, expected = _quiet(az.loo, idata, reff=1.0), _quiet(az.loo, reference, reff=1.0)
    assert loo.n_data_points == int(MASK.sum())  # zeros in the masked entries counted as data points
    assert _elpd(loo) == pytest.approx(_elpd(expected), rel=1e-9)
    assert _se(loo) == pytest.approx(_se(expected), rel=1e-9)  # and inflated the SE
    assert _p_loo(loo) == pytest.approx(_p_loo(expected), rel=1e-9, abs=1e-12)
    only = {g: list(idata[g].data_vars.values()) for g in ("observed_data", "posterior_predictive", "log_likelihood")}
    assert all(len(v) == 1 for v in only.values())
    observed = np.asarray(only["observed_data"][0])
    np.testing.assert_array_equal(observed, Y[MASK].numpy())  # no placeholder
    np.testing.assert_allclose(np.asarray(only["log_likelihood"][0]), log_lik_expected, rtol=1e-6)
    assert np.asarray(only["posterior_predictive"][0]).shape[2:] == observed.shape  # az.plot_ppc, az.loo_pit pair
    for group in only:
        assert set(idata[group].data_vars) == {"y"}, group  # the node's name, as for a fully observed node
    if hasattr(az, "plot_ppc"):  # ArviZ 0.x (ArviZ 1.x's plots live in arviz-plots)
        import matplotlib
        import matplotlib.pyplot as plt

        matplotlib.use("Agg")
        assert _quiet(az.plot_ppc, idata, var_names=["y"], num_pp_samples=10) is not None
        plt.close("all")
        pit = np.asarray(_quiet(az.loo_pit, idata, y="y"))
        assert pit.shape == observed.shape and ((pit > 0) & (pit <= 1)).all()  # a NaN entry would get 0
    if hasattr(az, "waic"):  # ArviZ 0.x
        assert _quiet(az.waic, idata).n_data_points == int(MASK.sum())


# NUTS runs with max_tree_depth=4: the entries of 'y_unobserved' where y is observed have a flat density (masked
# out of the model), along which every trajectory would grow to the default depth 10

def mcmc_mask_model(y, mask):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)


@pytest.fixture(scope="module")
def mask_run():
    """One NUTS run of :func:`mcmc_mask_model`, read (never changed) by the two tests below: each ran its own,
    the same seeded run."""
    return _nuts_run(mcmc_mask_model, Y, MASK, chains=1, max_tree_depth=4)


def test_from_mcmc_holds_the_observed_entries_of_an_obs_mask_site(mask_run):
    idata = from_mcmc(mask_run, posterior_predictive=True)
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    _check_the_data_groups(idata, dist.Normal(mu[..., None], 1.0).log_prob(Y[MASK]).numpy())


def test_from_mcmc_reports_the_posterior_of_an_obs_mask_site_as_its_node(mask_run):
    """'y' holds the observed value where observed and the draw where missing; 'y_unobserved' (noise where y is
    observed) is gone, also without a replay (log_likelihood=False)."""
    mcmc = mask_run
    raw = mcmc.get_samples(group_by_chain=True)["y_unobserved"]
    for idata in (from_mcmc(mcmc), from_mcmc(mcmc, log_likelihood=False)):
        assert set(idata["posterior"].data_vars) == {"mu", "y"}
        draws = torch.as_tensor(np.asarray(idata["posterior"]["y"]))
        assert draws.shape == (1, 60, len(Y))
        assert (draws[..., MASK] == Y[MASK]).all()
        assert torch.equal(draws[..., ~MASK], raw[..., ~MASK])
    assert "observed_data" not in list(getattr(idata, "children", None) or idata.groups())


def test_from_pyro_svi_holds_the_observed_entries_of_an_obs_mask_site():
    """Also: no warning that loo is not leave-one-out (it named 'y_unobserved' as a latent local to the data, but
    the missing half is drawn only where its sibling is masked out, so no observed point has seen its draw)."""
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticsWarning)
        idata = from_pyro_svi(obs_mask_model, obs_mask_guide, Y, MASK, num_samples=300)
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    _check_the_data_groups(idata, dist.Normal(mu[..., None], 1.0).log_prob(Y[MASK]).numpy())


@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # no continuous latent
def test_a_bayes_net_node_with_missing_entries_keeps_its_integer_data_and_name():
    """Node 'a' is missing in rows 0 and 1 (-1 there): its data are the other rows, integers, named 'a'."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(_chain_net().model, _chain_net().guide, BN_DATA, num_samples=20)
    assert set(idata["observed_data"].data_vars) == {"a", "b", "c"}
    seen = BN_DATA[:, 0] >= 0
    data = np.asarray(idata["observed_data"]["a"])
    assert data.dtype.kind == "i"
    np.testing.assert_array_equal(data, BN_DATA[seen, 0].numpy())
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["a"])[0],
                               PA.log()[BN_DATA[seen, 0]].expand(20, -1).numpy(), rtol=1e-6)
    assert np.asarray(idata["log_likelihood"]["b"]).shape == (1, 20, 3)  # b is missing in rows 3 and 4
    assert np.asarray(idata["posterior_predictive"]["a"]).shape == (1, 20, int(seen.sum()))


def masked_model(x, mask):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]), poutine.mask(mask=mask):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def masked_guide(x, mask):
    pyro.sample("mu", dist.Normal(1.0, 0.1))


def test_a_poutine_mask_keeps_the_site_s_name_and_its_counted_entries():
    """A site under poutine.mask (padding, say) is no obs_mask split: its name stays, its data are the entries
    the model counts; a mask that hides nothing keeps the full shape; one that hides every entry, no data."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(masked_model, masked_guide, Y, MASK, num_samples=30)
    np.testing.assert_array_equal(np.asarray(idata["observed_data"]["x"]), Y[MASK].numpy())
    assert np.asarray(idata["log_likelihood"]["x"]).shape == (1, 30, 4)
    whole = from_pyro_svi(masked_model, masked_guide, Y, torch.ones(6, dtype=torch.bool), num_samples=30)
    np.testing.assert_array_equal(np.asarray(whole["observed_data"]["x"]), Y.numpy())
    with pytest.warns(UserWarning, match="every posterior draw has the same pointwise log-likelihood"):
        none = from_pyro_svi(masked_model, masked_guide, Y, torch.zeros(6, dtype=torch.bool), num_samples=30)
    groups = list(getattr(none, "children", None) or none.groups())
    assert "log_likelihood" not in groups and "observed_data" not in groups


def test_an_obs_mask_over_a_matrix_lists_the_observed_entries_in_row_major_order():
    """A mask over rows and columns: the data groups hold y[m], one dim, in the order of torch's y[m]."""
    y = torch.arange(12.0).reshape(4, 3)
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, True], [True, False, False]])

    def model(y, mask):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        with pyro.plate("cols", 3, dim=-1), pyro.plate("rows", 4, dim=-2):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)

    def guide(y, mask):
        mu = pyro.sample("mu", dist.Normal(1.0, 0.1))
        with pyro.plate("cols", 3, dim=-1), pyro.plate("rows", 4, dim=-2):
            pyro.sample("y_unobserved", dist.Normal(mu, 1.0))

    pyro.set_rng_seed(0)
    idata = from_pyro_svi(model, guide, y, mask, num_samples=10)
    np.testing.assert_array_equal(np.asarray(idata["observed_data"]["y"]), y[mask].numpy())
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["y"]),
                               dist.Normal(mu[..., None], 1.0).log_prob(y[mask]).numpy(), rtol=1e-6)
    assert np.asarray(idata["posterior"]["y"]).shape == (1, 10, 4, 3)


def test_an_imputation_another_observed_site_reads_still_warns():
    """Where another observed site in the data plate reads the node (``z ~ N(y, 1)``), the imputed draws enter
    its log-likelihood, one per point: the warning that loo is not leave-one-out stays."""

    def model(y, mask, z):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        with pyro.plate("data", y.shape[0]):
            full = pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)
            pyro.sample("z", dist.Normal(full, 1.0), obs=z)

    def guide(y, mask, z):
        pyro.sample("mu", dist.Normal(0.5, 0.2))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y_unobserved", dist.Normal(0.0, 1.0))

    pyro.set_rng_seed(0)
    with pytest.warns(DiagnosticsWarning, match=r"\['y_unobserved'\] lie inside the data plate"):
        from_pyro_svi(model, guide, Y, MASK, Y + 0.5, num_samples=20)


def test_independent_columns_with_missing_entries_do_not_warn():
    """Two independent ``obs_mask`` columns and an unrelated observed site in one plate: no observed site reads
    another's imputations (Pyro's provenance tracking tells), so loo stays leave-one-out and nothing warns (it
    warned on every model with more than one column)."""

    def model(y, mask, u, umask, x):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)
            pyro.sample("u", dist.Normal(-mu, 1.0), obs=u, obs_mask=umask)
            pyro.sample("x", dist.Normal(mu, 2.0), obs=x)

    def guide(y, mask, u, umask, x):
        pyro.sample("mu", dist.Normal(0.5, 0.2))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y_unobserved", dist.Normal(0.0, 1.0))
            pyro.sample("u_unobserved", dist.Normal(0.0, 1.0))

    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticsWarning)
        idata = from_pyro_svi(model, guide, Y, MASK, -Y, ~MASK | torch.arange(len(Y)).eq(0), Y + 1, num_samples=20)
    assert {"y", "u", "x"} <= set(idata["observed_data"].data_vars)


# --- a mask of whole points where a shared enumerated site makes the point the unit --------------------------------
# Before, data_groups took the log-likelihood's N x 1 shape for the data's batch shape and indexed the flattened
# N x F data by point number: observed_data["y"] held the single values Y.flat[[0, 2, 3, 4]] (shape (4,)) and the
# replicates S x 4 single values, not the kept points' rows.

KEPT = [0, 2, 3, 4]  # the points the mask keeps
WHOLE = torch.tensor([True, False, True, True, True])


def _whole_point_masks(feature_dim: int) -> list[torch.Tensor]:
    """The mask over points (size 1 along the feature plate, or no dim there) and the same mask given entry by
    entry, each point's entries all true or all false."""
    from tests.diagnostics.test_pointwise_log_lik import F, N

    small = WHOLE[:, None] if feature_dim == -1 else WHOLE
    return [small, small.expand((N, F) if feature_dim == -1 else (F, N)).clone()]


def _check_kept_rows(masked, full, feature_dim: int):
    """``masked``'s data groups hold the kept points of ``full`` (the same draws, no mask): their whole rows of
    features in observed_data and posterior_predictive (``points x F``, the feature plate after the point's dim
    whichever of the two is outer), one entry per point in log_likelihood."""
    from tests.diagnostics.test_pointwise_log_lik import F, FEATURES

    observed = np.asarray(masked["observed_data"]["y"])
    assert observed.shape == (len(KEPT), F)
    np.testing.assert_array_equal(observed, FEATURES[KEPT].numpy())
    replicates, every = np.asarray(masked["posterior_predictive"]["y"]), np.asarray(full["posterior_predictive"]["y"])
    every = every if feature_dim == -1 else every.swapaxes(-1, -2)
    assert replicates.shape == every.shape[:2] + (len(KEPT), F)
    np.testing.assert_array_equal(replicates, every[:, :, KEPT])
    log_lik, all_points = np.asarray(masked["log_likelihood"]["y"]), np.asarray(full["log_likelihood"]["y"])
    assert log_lik.shape == every.shape[:2] + (len(KEPT),)
    np.testing.assert_array_equal(log_lik, all_points.reshape(every.shape[:2] + (-1,))[:, :, KEPT])


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("feature_dim", [-1, -2])
def test_from_pyro_svi_keeps_the_whole_rows_of_the_points_a_mask_keeps(parallel, feature_dim):
    """Also: the mask given entry by entry (``N x F``, each point's entries all true or all false) is a mask of
    whole points (it was refused as hiding some entries of a point) and gives the same groups."""
    from tests.diagnostics.test_pointwise_log_lik import FEATURES, mu_guide, nested_mixture

    y = FEATURES if feature_dim == -1 else FEATURES.T
    pyro.set_rng_seed(0)
    full = from_pyro_svi(nested_mixture, mu_guide, y, feature_dim, num_samples=6, parallel=parallel)
    for mask in _whole_point_masks(feature_dim):
        pyro.set_rng_seed(0)
        masked = from_pyro_svi(nested_mixture, mu_guide, y, feature_dim, mask, num_samples=6, parallel=parallel)
        _check_kept_rows(masked, full, feature_dim)


@pytest.mark.parametrize("parallel", [False, True])
def test_from_mcmc_keeps_the_whole_rows_of_the_points_a_mask_keeps(parallel):
    """The draws of a run on the masked model replayed with and without the mask (``model_kwargs``)."""
    from pyro.infer import MCMC, NUTS

    from tests.diagnostics.test_pointwise_log_lik import FEATURES, nested_mixture

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(nested_mixture), num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run(FEATURES, mask=WHOLE[:, None])
    full = from_mcmc(mcmc, model_args=(FEATURES,), model_kwargs={}, posterior_predictive=True, parallel=parallel,
                     generator=torch.Generator().manual_seed(0))
    for mask in _whole_point_masks(-1):
        masked = from_mcmc(mcmc, model_args=(FEATURES,), model_kwargs={"mask": mask}, posterior_predictive=True,
                           parallel=parallel, generator=torch.Generator().manual_seed(0))  # the same replicates
        _check_kept_rows(masked, full, -1)
