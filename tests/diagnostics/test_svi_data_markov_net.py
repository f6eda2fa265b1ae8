"""from_pyro_svi on models with a MarkovNet (hybridpgm/diagnostics/svi_data.py): placeholder sites left out,
real data kept beside them, and the exact log-likelihood of a MarkovNet distribution site."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics import from_pyro_svi
from tests.diagnostics.arviz_groups import group_names
from tests.diagnostics.svi_models import X, deterministic_and_factor_model, global_guide


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
