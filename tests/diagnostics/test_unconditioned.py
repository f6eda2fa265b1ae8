"""The posterior predictive of a model with a ``pyro.deterministic`` site inside a plate
(hybridpgm/diagnostics/unconditioned.py, shared by from_pyro_svi and from_mcmc, draw by draw and stacked).

Before, Pyro's ``poutine.uncondition`` re-drew ``pyro.deterministic("mu2", 2 * mu)`` in ``pyro.plate("data", N)``
(Pyro's default ``event_dim`` is ``value.dim()``) from its ``Delta``, which the plate broadcast to an ``N x N``
sample; the replicates of ``y ~ Normal(mu2, 1)`` were ``N x N`` per draw and from_pyro_svi / from_mcmc raised a
raw ``RuntimeError`` ("shape '[1, S, N]' is invalid for input of size S*N*N") at their reshape, with and without
``parallel``.  Now the deterministic site keeps the value the model computes, as ``event_dim=0`` gives it."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.infer.autoguide import AutoNormal
from scipy import stats

from hybridpgm.diagnostics import from_mcmc, from_pyro_svi
from tests.diagnostics.replay_models import Counted, plate_model
from tests.diagnostics.test_sampler_data import _nuts_run

Y = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1])


def doubled_model(y):
    """``mu2 = 2 mu`` per point, a ``pyro.deterministic`` site inside the plate with Pyro's default ``event_dim``
    (``value.dim()`` = 1): its ``Delta`` has event shape ``N`` and the plate gives it batch shape ``N``."""
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("data", y.shape[0]):
        mu2 = pyro.deterministic("mu2", 2 * mu * torch.ones(y.shape))
        pyro.sample("y", dist.Normal(mu2, 1.0), obs=y)


def doubled_model_event_dim_0(y):
    """:func:`doubled_model` written right for Pyro's uncondition: ``event_dim=0``."""
    mu = pyro.sample("mu", dist.Normal(0.0, 3.0))
    with pyro.plate("data", y.shape[0]):
        mu2 = pyro.deterministic("mu2", 2 * mu * torch.ones(y.shape), event_dim=0)
        pyro.sample("y", dist.Normal(mu2, 1.0), obs=y)


def _array(idata, group, name):
    return np.asarray(idata[group][name])


def _ks_bound(n: int) -> float:
    """The Kolmogorov-Smirnov critical value at level 1e-4 for ``n`` values (the seeds are fixed, so the tests
    are deterministic; the level says how unlikely a false alarm was when they were written)."""
    return math.sqrt(-math.log(1e-4 / 2) / 2) / math.sqrt(n)


def _check_by_hand(idata, mu: np.ndarray) -> None:
    """The groups of :func:`doubled_model` against hand computation, for ``C x D`` draws ``mu``: the
    log-likelihood is :math:`\\log N(y_n; 2 \\mu_{c,d}, 1)`, and each replicate is :math:`2 \\mu_{c,d}` plus
    N(0, 1) noise (KS at level 1e-4)."""
    rep = _array(idata, "posterior_predictive", "y")
    assert rep.shape == mu.shape + (len(Y),)
    y = Y.double().numpy()
    hand = -0.5 * (y - 2 * mu[..., None]) ** 2 - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(_array(idata, "log_likelihood", "y"), hand, rtol=1e-6, atol=1e-6)
    noise = (rep - 2 * mu[..., None]).ravel()
    assert stats.kstest(noise, "norm").statistic < _ks_bound(noise.size)


def test_from_pyro_svi_keeps_a_deterministic_site_in_a_plate_at_its_computed_value():
    """from_pyro_svi (AutoNormal, 1,000 draws, parallel False and True) of :func:`doubled_model`: the posterior
    ``mu2`` is ``2 mu``, the log-likelihood and the replicates are the hand computation's, and the groups are
    those of the same model written with ``event_dim=0``, value for value.  With ``parallel=True`` the
    replicates are stacked: 200 draws more cost no model run more (before: a raw RuntimeError)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoNormal(doubled_model, init_scale=1.0)
    guide(Y)
    for parallel in (False, True):
        pyro.set_rng_seed(2)
        idata = from_pyro_svi(doubled_model, guide, Y, num_samples=1000, parallel=parallel)
        pyro.set_rng_seed(2)
        right = from_pyro_svi(doubled_model_event_dim_0, guide, Y, num_samples=1000, parallel=parallel)
        mu = _array(idata, "posterior", "mu")
        np.testing.assert_array_equal(_array(idata, "posterior", "mu2"), np.broadcast_to(2 * mu[..., None],
                                                                                         (1, 1000, len(Y))))
        _check_by_hand(idata, mu)
        for group, name in (("posterior", "mu"), ("posterior", "mu2"), ("log_likelihood", "y"),
                            ("posterior_predictive", "y")):
            np.testing.assert_array_equal(_array(idata, group, name), _array(right, group, name))

    def runs(num_samples):
        counted = Counted(doubled_model)
        pyro.set_rng_seed(2)
        from_pyro_svi(counted, guide, Y, num_samples=num_samples, parallel=True)
        return counted.runs

    assert runs(400) == runs(200)


def test_from_mcmc_keeps_a_deterministic_site_in_a_plate_at_its_computed_value():
    """from_mcmc(posterior_predictive=True) of a NUTS run (2 chains x 60 draws), parallel False and True: the
    log-likelihood and replicates are the hand computation's, and the replicates those of the same model written
    with ``event_dim=0`` (its NUTS run, same seed, gives the same draws), value for value."""
    mcmc = _nuts_run(doubled_model, Y)
    right_mcmc = _nuts_run(doubled_model_event_dim_0, Y)
    mu = mcmc.get_samples(group_by_chain=True)["mu"].double().numpy()
    np.testing.assert_array_equal(right_mcmc.get_samples(group_by_chain=True)["mu"].double().numpy(), mu)
    for parallel in (False, True):
        seeded = {"parallel": parallel, "posterior_predictive": True}
        idata = from_mcmc(mcmc, **seeded, generator=torch.Generator().manual_seed(3))
        right = from_mcmc(right_mcmc, **seeded, generator=torch.Generator().manual_seed(3))
        _check_by_hand(idata, mu)
        for group in ("log_likelihood", "posterior_predictive"):
            np.testing.assert_array_equal(_array(idata, group, "y"), _array(right, group, "y"))


def masked_model(x):
    """A model with no deterministic site of its own, but Pyro's ``obs_mask`` one (``"x"``), and a scalar
    deterministic site inside the plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        shift = pyro.deterministic("shift", mu / 2)
        pyro.sample("x", dist.Normal(mu + shift, 1.0), obs=x, obs_mask=torch.tensor([True, False, True, True, False]))


def test_models_pyros_uncondition_handled_keep_their_replicates_bit_for_bit():
    """Guard (the module is new; the converters' groups were compared before and after the change on five such
    models, bit for bit): the draw-by-draw replicates of models without a deterministic site, or with ones
    Pyro's uncondition re-drew to their own value, are those of ``Predictive(poutine.uncondition(model))``
    under the same seed, value for value: a ``Delta`` draws no random number."""
    from hybridpgm.diagnostics.unconditioned import predict_per_draw  # here: the module is new

    held = {"mu": torch.linspace(-1.0, 1.0, 7), "log_sigma": torch.linspace(-0.5, 0.5, 7)}
    for model, sites, observed in ((plate_model, ["mu", "log_sigma"], ["x"]),
                                   (masked_model, ["mu"], ["x_observed"])):
        draws = {n: held[n] for n in sites}
        pyro.set_rng_seed(4)
        ours = predict_per_draw(model, draws, observed, 7, (Y,), {})
        pyro.set_rng_seed(4)
        pyros = Predictive(poutine.uncondition(model), posterior_samples=draws, num_samples=7,
                           return_sites=observed)(Y)
        assert set(ours) == set(observed)
        for name in observed:
            assert ours[name].shape == (7, len(Y))
            torch.testing.assert_close(ours[name], pyros[name], rtol=0, atol=0)
    assert predict_per_draw(plate_model, held, [], 7, (Y,), {}) == {}
