"""from_pyro_svi on models with enumerated discrete sites (hybridpgm/diagnostics/svi_data.py): local and global
sites drawn from their conditional posterior, summed out of the log-likelihood as the model does."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics import from_pyro_svi
from tests.diagnostics.svi_models import LOCS, MIXTURE_X, WEIGHTS, X, mixture_guide, mixture_model


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
