"""The posterior predictive of from_pyro_svi / from_mcmc under ``parallel=True`` from one stacked run
(hybridpgm/diagnostics/vectorized_predictive.py).

Before, ``parallel=True`` stacked the log-likelihood replay only: the replicates still took one model run per
draw (``Predictive`` draw by draw), so from_pyro_svi's model ran once per draw and from_mcmc's ``C * D`` times
with ``posterior_predictive=True``."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from scipy import stats

from hybridpgm.diagnostics import from_mcmc, from_pyro_svi
from tests.diagnostics.arviz_groups import group_names
from tests.diagnostics.replay_models import Counted, mixing_model, plate_model
from tests.diagnostics.test_sampler_data import _nuts_run

X = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1, -0.4])
MASK = torch.tensor([True, False, True, True, False, True])


def guide(x):
    """Draws spread wide (mu sd 1) so that a replicate taken from another draw's distribution is far off."""
    pyro.sample("mu", dist.Normal(0.4, 1.0))
    pyro.sample("log_sigma", dist.Normal(0.1, 0.5))


def _array(idata, group, name):
    return np.asarray(idata[group][name])


def _z_scores(idata):
    """Each replicate standardised by its own draw's mu and sigma: iid N(0, 1) where each replicate follows its
    own draw."""
    rep = _array(idata, "posterior_predictive", "x")[0]
    mu = _array(idata, "posterior", "mu")[0][:, None]
    sigma = np.exp(_array(idata, "posterior", "log_sigma")[0])[:, None]
    return ((rep - mu) / sigma).ravel()


def test_the_replicates_of_the_stacked_run_follow_each_draw_as_the_draw_by_draw_ones_do():
    """Guard for the distribution (passes before and after; the stacking itself is shown by the run counts
    below): 2,000 draws x 6 points = 12,000 standardised replicates, N(0, 1) under either path.  The bound is the
    Kolmogorov-Smirnov critical value at level 1e-4, sqrt(-ln(1e-4 / 2) / 2) / sqrt(n) = 0.0203 for n = 12,000
    (the seeds are fixed, so the test is deterministic; the level says how unlikely a false alarm was when it was
    written).  Replicates taken from a random other draw would have a variance of about 1 + 2 Var(mu) / E(sigma^2)
    ~ 2.4 here, a KS distance near 0.13."""
    n = 2000 * len(X)
    bound = math.sqrt(-math.log(1e-4 / 2) / 2) / math.sqrt(n)
    for parallel in (False, True):
        pyro.set_rng_seed(1)
        idata = from_pyro_svi(plate_model, guide, X, num_samples=2000, parallel=parallel)
        z = _z_scores(idata)
        assert z.shape == (n,)
        assert stats.kstest(z, "norm").statistic < bound, parallel
    shuffled = _array(idata, "posterior_predictive", "x")[0][np.random.default_rng(0).permutation(2000)]
    mu = _array(idata, "posterior", "mu")[0][:, None]
    sigma = np.exp(_array(idata, "posterior", "log_sigma")[0])[:, None]
    assert stats.kstest(((shuffled - mu) / sigma).ravel(), "norm").statistic > 5 * bound  # the test can fail


def runs(program, num_samples, parallel):
    counted = Counted(program)
    pyro.set_rng_seed(0)
    from_pyro_svi(counted, guide, X, num_samples=num_samples, parallel=parallel)
    return counted.runs


def test_parallel_draws_the_replicates_of_all_draws_in_one_run():
    """The model's runs no longer grow with the draws: 200 and 400 draws cost the same (the sites' run, the
    checked draws and one stacked run, for the log-likelihood and again for the replicates); by default two per
    draw."""
    assert runs(plate_model, 400, True) == runs(plate_model, 200, True)
    assert runs(plate_model, 400, False) - runs(plate_model, 200, False) == 2 * 200


def test_a_refused_stacked_run_gives_the_default_replicates_exactly():
    """Guard (passes before and after): mixing_model fails the checks: the stacked attempt's draws are undone
    and the draw-by-draw Predictive gives the very replicates of the default (one run per draw for them)."""
    pyro.set_rng_seed(0)
    default = from_pyro_svi(mixing_model, guide, X, num_samples=40)
    pyro.set_rng_seed(0)
    parallel = from_pyro_svi(mixing_model, guide, X, num_samples=40, parallel=True)
    np.testing.assert_array_equal(_array(parallel, "posterior_predictive", "x"),
                                  _array(default, "posterior_predictive", "x"))
    assert runs(mixing_model, 80, True) - runs(mixing_model, 40, True) == 2 * 40


def masked_model(y, m, z):
    """An obs_mask split, a vector event under the plate and a scalar observation broadcast across a plate; the
    replicates of ``y`` are its draw's ``mu + offsets`` exactly (a Delta), so both paths must give the same."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    with pyro.plate("rows", len(y)):
        pyro.sample("y", dist.Delta(mu + torch.arange(len(y), dtype=y.dtype)), obs=y, obs_mask=m)
        pair = torch.ones(2)  # a two-vector per row, whatever the latents' leading dims
        pyro.sample("z", dist.Normal(mu[..., None] * pair, log_sigma.exp()[..., None] * pair).to_event(1), obs=z)
    with pyro.plate("counts", 3):
        pyro.sample("c", dist.Poisson(log_sigma.exp()), obs=torch.tensor(2.0))


def masked_guide(y, m, z):
    pyro.sample("mu", dist.Normal(0.4, 0.3))
    pyro.sample("log_sigma", dist.Normal(0.1, 0.2))
    with pyro.plate("rows", len(y)):
        pyro.sample("y_unobserved", dist.Normal(0.0, 1.0))


def _layout(idata):
    return {group: {name: (var.dims, var.shape, var.dtype) for name, var in idata[group].data_vars.items()}
            for group in group_names(idata)}


def test_the_stacked_replicates_have_the_default_layout_and_mask_handling():
    """Groups, variables, dims, shapes and dtypes equal the default's; the obs_mask node's replicates are
    ``(mu_s + offsets)[m]`` exactly under both paths, and the run count shows the stacked predictive ran."""
    z = torch.linspace(-1.0, 1.0, 12).reshape(6, 2)
    args = (X, MASK, z)
    out = {}
    for parallel in (False, True):
        pyro.set_rng_seed(0)
        out[parallel] = from_pyro_svi(masked_model, masked_guide, *args, num_samples=30, parallel=parallel)
    assert _layout(out[True]) == _layout(out[False])
    assert _array(out[True], "posterior_predictive", "y").shape == (1, 30, int(MASK.sum()))
    mu = _array(out[True], "posterior", "mu")[0]
    expected = (mu[:, None] + np.arange(6, dtype=np.float32))[:, MASK.numpy()]
    for parallel in (False, True):
        np.testing.assert_array_equal(_array(out[parallel], "posterior_predictive", "y")[0], expected)
        np.testing.assert_array_equal(_array(out[parallel], "posterior", "mu"), _array(out[False], "posterior", "mu"))
    counts = []
    for num_samples in (30, 60):
        counted = Counted(masked_model)
        pyro.set_rng_seed(0)
        from_pyro_svi(counted, masked_guide, *args, num_samples=num_samples, parallel=True)
        counts.append(counted.runs)
    # no model run per draw (by default 2 x 30 more for 30 more draws): only the number of distinct checked draws
    # may differ (an extreme draw that is also the first or the last is checked once)
    assert abs(counts[1] - counts[0]) < 30


def test_from_mcmc_parallel_stacks_the_replicates_with_the_default_layout():
    """from_mcmc(posterior_predictive=True, parallel=True): the sites' run plus, for the log-likelihood and for
    the replicates, one stacked run and one run per checked draw (2 x 60 draws, by default 1 + 2 x 120 runs); the
    layout is the default's and each replicate follows its own draw (x~ - mu ~ N(0, sigma), KS bound at level
    1e-4 for 1,440 values); a seed gives the same replicates again."""
    from hybridpgm.diagnostics.vectorized_replay import checked_rows

    counted = Counted(plate_model)
    mcmc = _nuts_run(counted, X * 2)
    counted.runs = 0
    stacked = from_mcmc(mcmc, posterior_predictive=True, parallel=True, generator=torch.Generator().manual_seed(3))
    samples = {n: v.reshape(120, *v.shape[2:]) for n, v in mcmc.get_samples(group_by_chain=True).items()}
    assert counted.runs == 1 + 2 * (1 + len(checked_rows(samples, 120)))
    default = from_mcmc(mcmc, posterior_predictive=True, generator=torch.Generator().manual_seed(3))
    assert _layout(stacked) == _layout(default)
    rep = _array(stacked, "posterior_predictive", "x")
    mu = _array(stacked, "posterior", "mu")[..., None]
    sigma = np.exp(_array(stacked, "posterior", "log_sigma"))[..., None]
    bound = math.sqrt(-math.log(1e-4 / 2) / 2) / math.sqrt(rep.size)
    assert stats.kstest(((rep - mu) / sigma).ravel(), "norm").statistic < bound
    again = from_mcmc(mcmc, posterior_predictive=True, parallel=True, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(_array(again, "posterior_predictive", "x"), rep)


def deterministic_model(x):
    """:func:`plate_model` with its mean as a ``pyro.deterministic`` site outside the plate (``N``-shaped, as in
    a regression's ``a + b * x``) and its scale as one inside it."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    mean = pyro.deterministic("mean", mu + 0.5 * x)
    with pyro.plate("data", x.shape[0]):
        sigma = pyro.deterministic("sigma", log_sigma.exp() * torch.ones(x.shape), event_dim=0)
        pyro.sample("x", dist.Normal(mean, sigma), obs=x)


def test_a_deterministic_site_keeps_the_replicates_stacked():
    """Before, Pyro's uncondition re-sampled the deterministic ``mean`` from its Delta under the draws' plate
    (``S x 1 x S x N``), the replicates did not stack and each draw was predicted by a run of its own (2 x 200
    runs more for 200 more draws, as by default).  Now the runs do not grow with the draws; the log-likelihood
    and the deterministic values are the draw-by-draw ones, and each replicate follows its own draw (KS bound at
    level 1e-4, as above)."""
    assert runs(deterministic_model, 400, True) == runs(deterministic_model, 200, True)
    assert runs(deterministic_model, 400, False) - runs(deterministic_model, 200, False) == 2 * 200
    out = {}
    for parallel in (False, True):
        pyro.set_rng_seed(1)
        out[parallel] = from_pyro_svi(deterministic_model, guide, X, num_samples=2000, parallel=parallel)
    for group, name in (("posterior", "mu"), ("posterior", "mean"), ("posterior", "sigma")):
        np.testing.assert_array_equal(_array(out[True], group, name), _array(out[False], group, name))
    np.testing.assert_allclose(_array(out[True], "log_likelihood", "x"), _array(out[False], "log_likelihood", "x"),
                               rtol=1e-6, atol=0)
    assert _layout(out[True]) == _layout(out[False])
    mean = _array(out[True], "posterior", "mean")[0]
    sigma = _array(out[True], "posterior", "sigma")[0]
    z = ((_array(out[True], "posterior_predictive", "x")[0] - mean) / sigma).ravel()
    assert stats.kstest(z, "norm").statistic < math.sqrt(-math.log(1e-4 / 2) / 2) / math.sqrt(z.size)


def test_from_mcmc_stacks_the_replicates_of_a_model_with_a_deterministic_site():
    """from_mcmc(posterior_predictive=True, parallel=True) of deterministic_model: the sites' run plus, for the
    log-likelihood and for the replicates, one stacked run and one run per checked draw (before: 120 runs more
    for the replicates, one per draw)."""
    from hybridpgm.diagnostics.vectorized_replay import checked_rows

    counted = Counted(deterministic_model)
    mcmc = _nuts_run(counted, X * 2)
    counted.runs = 0
    from_mcmc(mcmc, posterior_predictive=True, parallel=True, generator=torch.Generator().manual_seed(3))
    samples = {n: v.reshape(120, *v.shape[2:]) for n, v in mcmc.get_samples(group_by_chain=True).items()}
    assert counted.runs == 1 + 2 * (1 + len(checked_rows(samples, 120)))
