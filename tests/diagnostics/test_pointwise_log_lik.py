"""observed_shape (hybridpgm/diagnostics/pointwise_log_lik.py) without torch.broadcast_shapes.

Before, observed_shape called torch.broadcast_shapes, whose first call imports sympy (about 0.35 s, and a module
the diagnostics do not need) inside every fresh process's first from_pyro_svi / from_mcmc."""

import subprocess
import warnings
import sys

import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics.pointwise_log_lik import observed_shape
from hybridpgm.errors import DataError


def _site(value, fn):
    return {"value": value, "fn": fn}


def test_observed_shape_broadcasts_a_smaller_value_and_refuses_extra_or_clashing_dims():
    """Guard (passes before and after): the pure-Python broadcast gives torch's shapes and refusals."""
    fn = dist.Normal(torch.zeros(4, 3), 1.0)
    assert observed_shape("y", _site(torch.tensor(1.0), fn)) == torch.Size([4, 3])
    assert observed_shape("y", _site(torch.zeros(3), fn)) == torch.Size([4, 3])
    assert observed_shape("y", _site(torch.zeros(1, 3), fn)) == torch.Size([4, 3])
    with pytest.raises(DataError, match=r"observed site 'y': its value of shape \(2, 4, 3\)"):
        observed_shape("y", _site(torch.zeros(2, 4, 3), fn))
    with pytest.raises(DataError, match=r"value of shape \(2,\) does not broadcast"):
        observed_shape("y", _site(torch.zeros(2), fn))
    vector = dist.Normal(torch.zeros(4, 2), 1.0).to_event(1)
    assert observed_shape("z", _site(torch.zeros(2), vector)) == torch.Size([4, 2])


def test_a_first_conversion_imports_no_sympy():
    """Counts the work, not the time: in a fresh process from_pyro_svi leaves sympy unimported."""
    code = """
import sys
import pyro, pyro.distributions as dist, torch
from hybridpgm.diagnostics import from_pyro_svi
def model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("d", 3):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
def guide(x):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
from_pyro_svi(model, guide, torch.zeros(3), num_samples=5)
print("sympy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# --- a local enumerated site shared by the entries of a point under an inner plate --------------------------------
# Before, z_n was summed out of each feature's likelihood separately, log sum_k w_k N(y_nf | mu_kf) per (n, f),
# not out of the point's: from_mcmc / from_pyro_svi gave per-element marginals (-35.35 a draw in the audit's
# mixture, whose log p(y | mu) is -27.55) that az.loo read as N * F independent points.

import numpy as np  # noqa: E402
import pyro  # noqa: E402
from pyro.ops.indexing import Vindex  # noqa: E402

from hybridpgm.diagnostics import from_mcmc, from_pyro_svi  # noqa: E402

N, F, K = 5, 3, 2
WEIGHTS = torch.tensor([0.4, 0.6])
FEATURES = torch.cat([torch.randn(2, F, generator=torch.Generator().manual_seed(0)) - 2.0,
                      torch.randn(3, F, generator=torch.Generator().manual_seed(1)) + 2.0])  # N x F


def nested_mixture(y, feature_dim=-1, mask=None):
    """``z_n`` in plate "data", shared by the ``F`` features of point ``n`` under plate "feat"; with
    ``feature_dim=-2`` the feature plate is the outer dim (``y`` is ``F x N``)."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros(K, F), 3.0).to_event(2))
    data_dim = -1 if feature_dim == -2 else -2
    with pyro.plate("data", N, dim=data_dim):
        z = pyro.sample("z", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        with pyro.plate("feat", F, dim=feature_dim):
            loc = Vindex(mu)[z, torch.arange(F)] if feature_dim == -1 else Vindex(mu)[z, torch.arange(F)[:, None]]
            with pyro.poutine.mask(mask=True if mask is None else mask):
                pyro.sample("y", dist.Normal(loc, 1.0), obs=y)


def mu_guide(y, feature_dim=-1, mask=None):
    pyro.sample("mu", dist.Normal(torch.tensor([[-2.0] * F, [2.0] * F]), 0.5).to_event(2))


def _joint(mu, y=FEATURES):
    """``S x N``: log p(y_n | mu) = log sum_k w_k prod_f N(y_nf | mu_kf, 1), the model's likelihood of point n."""
    per_feature = dist.Normal(mu[:, :, None, :], 1.0).log_prob(y)  # S x K x N x F
    return torch.logsumexp(per_feature.sum(-1) + WEIGHTS.log()[:, None], dim=1)


def _mu(idata):
    return torch.as_tensor(np.asarray(idata["posterior"]["mu"]))[0]


@pytest.mark.parametrize("parallel", [False, True])
def test_from_pyro_svi_sums_a_shared_assignment_out_of_the_product_over_the_features(parallel):
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=20, parallel=parallel)
    log_lik = np.asarray(idata["log_likelihood"]["y"])
    assert log_lik.shape == (1, 20, N, 1)  # one entry per point; the feature plate's dim kept, of size 1
    np.testing.assert_allclose(log_lik[0, :, :, 0], _joint(_mu(idata)).numpy(), rtol=1e-6)
    assert np.asarray(idata["observed_data"]["y"]).shape == (N, F)
    assert np.asarray(idata["posterior_predictive"]["y"]).shape == (1, 20, N, F)


def test_the_parallel_and_sequential_paths_give_the_same_point_log_likelihood():
    """Guard (passes before and after): with an enumerated site ``parallel=True`` replays draw by draw too."""
    pyro.set_rng_seed(0)
    by_draw = from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=10)
    pyro.set_rng_seed(0)
    stacked = from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=10, parallel=True)
    np.testing.assert_array_equal(np.asarray(stacked["log_likelihood"]["y"]),
                                  np.asarray(by_draw["log_likelihood"]["y"]))


def test_an_outer_feature_plate_is_multiplied_out_too():
    """The feature plate left of the data plate (``y`` is ``F x N``): one entry per point, ``1 x N``."""
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(nested_mixture, mu_guide, FEATURES.T, num_samples=8, feature_dim=-2)
    log_lik = np.asarray(idata["log_likelihood"]["y"])
    assert log_lik.shape == (1, 8, 1, N)
    np.testing.assert_allclose(log_lik[0, :, 0, :], _joint(_mu(idata)).numpy(), rtol=1e-6)


def test_from_mcmc_sums_the_assignment_out_of_the_point_with_and_without_parallel():
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(nested_mixture), num_samples=8, warmup_steps=8, disable_progbar=True)
    mcmc.run(FEATURES)
    mu = mcmc.get_samples()["mu"]
    for parallel in (False, True):
        log_lik = np.asarray(from_mcmc(mcmc, parallel=parallel)["log_likelihood"]["y"])
        assert log_lik.shape == (1, 8, N, 1)
        np.testing.assert_allclose(log_lik[0, :, :, 0], _joint(mu).numpy(), rtol=1e-6)


def test_az_loo_counts_points_not_their_features():
    import arviz as az

    pyro.set_rng_seed(0)
    idata = from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-hat and WAIC-variance warnings on 50 draws, irrelevant here
        loo = az.loo(idata, pointwise=True)
    assert loo.n_data_points == N
    if not hasattr(az, "waic"):  # ArviZ 1.x has no WAIC (LOO only): the count above is the check there
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        waic = az.waic(idata)
    log_lik = _joint(_mu(idata)).double()  # S x N
    lppd = torch.logsumexp(log_lik, 0) - np.log(50.0)
    expected = float((lppd - log_lik.var(0, unbiased=False)).sum())  # ArviZ 0.x: the draws' variance, ddof 0
    assert abs(float(waic.elpd_waic) - expected) < 1e-6 * abs(expected), (waic.elpd_waic, expected)


def nested_assignments(y):
    """``z_n`` per point and ``u_nf`` per feature, ``u`` depending on ``z``: log p(y_n | mu) =
    log sum_z w_z prod_f sum_u p(u | z) N(y_nf | mu_zf + u, 1)."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros(K, F), 3.0).to_event(2))
    with pyro.plate("data", N, dim=-2):
        z = pyro.sample("z", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        with pyro.plate("feat", F, dim=-1):
            u = pyro.sample("u", dist.Bernoulli(TRANSITION[z]), infer={"enumerate": "parallel"})
            pyro.sample("y", dist.Normal(Vindex(mu)[z, torch.arange(F)] + u, 1.0), obs=y)


TRANSITION = torch.tensor([0.2, 0.9])  # p(u = 1 | z)


def test_sites_at_two_plate_levels_are_eliminated_innermost_first():
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(nested_assignments, mu_guide, FEATURES, num_samples=6)
    mu = _mu(idata)
    u = torch.tensor([0.0, 1.0])
    per_u = dist.Normal(mu[:, :, None, :, None] + u, 1.0).log_prob(FEATURES[..., None])  # S x K x N x F x 2
    prior_u = torch.stack([1 - TRANSITION, TRANSITION], -1).log()[:, None, None, :]  # K x 1 x 1 x 2
    per_feature = torch.logsumexp(per_u + prior_u, dim=-1)  # S x K x N x F
    expected = torch.logsumexp(per_feature.sum(-1) + WEIGHTS.log()[:, None], dim=1)
    log_lik = np.asarray(idata["log_likelihood"]["y"])
    assert log_lik.shape == (1, 6, N, 1)
    np.testing.assert_allclose(log_lik[0, :, :, 0], expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("parallel", [False, True])
def test_a_mask_that_splits_a_point_is_refused_and_one_over_whole_points_is_kept(parallel):
    """Also the mask over whole points given entry by entry (``N x F``, each row all true or all false): it was
    refused with "hides some entries of a point" (_check_mask tested the mask's size along the feature plate,
    not whether it varies there).  observed_data and posterior_predictive: test_masked_data.py."""
    split = torch.ones(N, F, dtype=torch.bool)
    split[0, 1] = False
    with pytest.raises(DataError, match=r"observed site 'y': its mask \(shape \(5, 3\)\).*\['feat'\]"):
        from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=4, mask=split, parallel=parallel)
    whole = torch.tensor([True, False, True, True, True])[:, None]
    for mask in (whole, whole.expand(N, F).clone()):
        pyro.set_rng_seed(0)
        idata = from_pyro_svi(nested_mixture, mu_guide, FEATURES, num_samples=4, mask=mask, parallel=parallel)
        log_lik = np.asarray(idata["log_likelihood"]["y"])
        assert log_lik.shape == (1, 4, N - 1)  # the hidden point left out (masked_data.data_groups)
        np.testing.assert_allclose(log_lik[0], _joint(_mu(idata))[:, [0, 2, 3, 4]].numpy(), rtol=1e-6)


def separate_features(y, x):
    """``x_n`` a mixture in plate "data"; ``y_nf`` in "data" x "feat" does not depend on ``z_n``."""
    mu = pyro.sample("mu", dist.Normal(torch.zeros(K, F), 3.0).to_event(2))
    with pyro.plate("data", N, dim=-2):
        z = pyro.sample("z", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(Vindex(mu)[z, 0], 1.0), obs=x)
        with pyro.plate("feat", F, dim=-1):
            pyro.sample("y", dist.Normal(mu[1], 1.0), obs=y)


def test_an_observation_that_shares_no_enumerated_site_keeps_one_entry_per_element():
    """Guard (passes before and after): where no enumerated site is shared by a point's entries they are
    independent given the draw, and the observation unit stays the element (here ``y_nf``, N x F)."""
    x = torch.tensor([-2.0, -1.0, 0.5, 2.0, 2.5])[:, None]
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(separate_features, mu_guide, FEATURES, x, num_samples=6)
    mu = _mu(idata)
    log_lik = np.asarray(idata["log_likelihood"]["y"])
    assert log_lik.shape == (1, 6, N, F)
    np.testing.assert_allclose(log_lik[0], dist.Normal(mu[:, None, 1, :], 1.0).log_prob(FEATURES).numpy(), rtol=1e-6)
    expected_x = torch.logsumexp(dist.Normal(mu[:, :, None, 0], 1.0).log_prob(x[:, 0]) + WEIGHTS.log()[:, None], 1)
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["x"])[0, :, :, 0], expected_x.numpy(), rtol=1e-6)
