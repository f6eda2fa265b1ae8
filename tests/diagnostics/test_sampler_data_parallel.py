"""from_mcmc's opt-in stacked replay, ``parallel=True`` (hybridpgm/diagnostics/sampler_data.py,
vectorized_replay.replay_stacked).

Before, from_mcmc replayed the model once per draw for the log-likelihood (C * D model runs; 0.8 s for 1,000
draws of a two-latent, 200-point model against 9 ms stacked) and had no ``parallel`` option."""

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics import from_mcmc
from hybridpgm.errors import ConfigError
from tests.diagnostics.replay_models import MIXTURE_Y, Counted, enumerated_mixture, mixing_model, plate_model
from tests.diagnostics.test_sampler_data import _nuts_run

Y = torch.linspace(-1.0, 3.0, 12)


def _runs(mcmc, counted, **options):
    counted.runs = 0
    idata = from_mcmc(mcmc, **options)
    return counted.runs, idata


def _checked(mcmc, draws):
    """How many draws the stacked run is checked at (vectorized_replay.checked_rows), and its cap."""
    from hybridpgm.diagnostics.vectorized_replay import MAX_CHECKED, checked_rows

    flat = {n: v.reshape((-1,) + v.shape[2:]) for n, v in mcmc.get_samples(group_by_chain=True).items()}
    return len(checked_rows(flat, draws)), MAX_CHECKED


def test_parallel_replays_all_draws_in_a_few_runs_with_the_same_log_likelihood():
    """Default: one model run for the sites and one per draw (1 + 2 x 60).  ``parallel=True``: the sites' run,
    the stacked run and one run per checked draw (the first, which also shows that the model draws no random
    number, the last, the extreme ones and a few at random: vectorized_replay.checked_rows), whatever the number
    of draws; the log-likelihood the same to float rounding (rtol 1e-6)."""
    counted = Counted(plate_model)
    mcmc = _nuts_run(counted, Y)
    draws = 2 * 60
    runs, by_draw = _runs(mcmc, counted)
    assert runs == 1 + draws
    runs, stacked = _runs(mcmc, counted, parallel=True)
    checked, cap = _checked(mcmc, draws)
    assert runs == 2 + checked <= 2 + cap
    expected = np.asarray(by_draw["log_likelihood"]["x"])
    assert expected.shape == (2, 60, 12)
    np.testing.assert_allclose(np.asarray(stacked["log_likelihood"]["x"]), expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(np.asarray(stacked["posterior"]["mu"]), np.asarray(by_draw["posterior"]["mu"]))


def test_a_refused_stacked_run_leaves_the_posterior_predictive_of_a_seed_alone():
    """Guard (passes before and after): where the stacked runs are refused (mixing_model), their attempts move no
    random stream, so a seed gives the default's replicates exactly also with ``parallel=True``."""
    mcmc = _nuts_run(mixing_model, Y, chains=1)
    by_draw = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(3))
    stacked = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(3), parallel=True)
    np.testing.assert_array_equal(np.asarray(stacked["posterior_predictive"]["x"]),
                                  np.asarray(by_draw["posterior_predictive"]["x"]))


def test_a_model_that_mixes_stacked_draws_is_replayed_draw_by_draw():
    """With ``parallel=True`` the stacked run of mixing_model differs from the draw-by-draw one at the checked
    draws, so every draw is replayed (the sites' run, the stacked run, the checked draws, then one per draw) and
    each keeps its own log-likelihood."""
    counted = Counted(mixing_model)
    mcmc = _nuts_run(counted, Y, chains=1)
    runs, idata = _runs(mcmc, counted, parallel=True)
    assert runs == 2 + _checked(mcmc, 60)[0] + 60
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))[0]
    sigma = torch.as_tensor(np.asarray(idata["posterior"]["log_sigma"]))[0].exp()
    expected = dist.Normal(mu[:, None], sigma[:, None]).log_prob(Y)
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["x"])[0], expected.numpy(), rtol=1e-6)


def test_an_enumerated_site_is_replayed_draw_by_draw_with_parallel():
    """A model-enumerated assignment (summed out of the likelihood per draw) is not stacked: ``parallel=True``
    gives the draw-by-draw numbers exactly."""
    mcmc = _nuts_run(enumerated_mixture, MIXTURE_Y, chains=1)
    np.testing.assert_array_equal(np.asarray(from_mcmc(mcmc, parallel=True)["log_likelihood"]["y"]),
                                  np.asarray(from_mcmc(mcmc)["log_likelihood"]["y"]))


def test_parallel_must_be_a_bool():
    mcmc = _nuts_run(plate_model, Y, chains=1)
    with pytest.raises(ConfigError, match="from_mcmc parallel must be True or False, got 'yes'"):
        from_mcmc(mcmc, parallel="yes")
