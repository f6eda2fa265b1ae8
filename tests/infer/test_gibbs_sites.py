"""The shape checks of a Gibbs model's sample sites (hybridpgm/infer/gibbs_sites.py), against enumeration.

Found by an audit (ESTIM, session 38): a site outside a plate that reads a plated latent -- ``y ~ Normal(z.sum(-1),
0.5)``, a count observation of three Bernoulli(0.2) -- was skipped (``.sum(-1)`` and ``.to_event(1)``: the chain
sampled the prior, P(z_i = 1 | y = 3) = 0.20 against the exact 0.7909) or added to every element's conditional as if
all elements took the enumerated state at once (``keepdim=True``: 1.0).  Now both raise a
:class:`~hybridpgm.errors.ModelSpecError` naming the site and the plate; the same count model written with a
sequential plate, and a model that reads each element inside the plate, match enumeration."""

from __future__ import annotations

import itertools
import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC

from hybridpgm.errors import ModelSpecError
from hybridpgm.infer import Gibbs

az = pytest.importorskip("arviz")

Y = torch.tensor(3.0)


def _sum_outside(y):
    with pyro.plate("p", 3, dim=-1):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.2)))
    pyro.sample("y", dist.Normal(z.sum(-1), 0.5), obs=y)


def _sum_outside_event(y):
    with pyro.plate("p", 3, dim=-1):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.2)))
    pyro.sample("y", dist.Normal(z.sum(-1, keepdim=True), 0.5).to_event(1), obs=y.reshape(1))


def _sum_outside_keepdim(y):
    with pyro.plate("p", 3, dim=-1):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.2)))
    pyro.sample("y", dist.Normal(z.sum(-1, keepdim=True), 0.5), obs=y.reshape(1))


def _sum_of_a_sequential_plate(y):
    """The count model that Gibbs can sample: one site per element (each its own block)."""
    zs = [pyro.sample(f"z_{i}", dist.Bernoulli(torch.tensor(0.2))) for i in pyro.plate("p", 3)]
    pyro.sample("y", dist.Normal(zs[0] + zs[1] + zs[2], 0.5), obs=y)


def _each_inside(y):
    with pyro.plate("p", 3, dim=-1):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.2)))
        pyro.sample("y", dist.Normal(z, 0.5), obs=y)


def _exact_count_posterior() -> float:
    """P(z_0 = 1 | y = 3) of the count model by enumerating its 2^3 states (0.7909)."""
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    log_p = dist.Bernoulli(0.2).log_prob(states).sum(-1) + dist.Normal(states.sum(-1), 0.5).log_prob(Y)
    return float((log_p.softmax(0) * states[:, 0]).sum())


def _mcmc(model, num_samples, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcmc = MCMC(Gibbs(model, **kwargs), num_samples=num_samples, warmup_steps=50, disable_progbar=True)
        mcmc.run(*args)
    return mcmc


@pytest.mark.parametrize("model", [_sum_outside, _sum_outside_event, _sum_outside_keepdim])
def test_a_site_reading_a_plated_latent_outside_its_plate_is_refused(model):
    """Fails before: the chain ran, mean z 0.20 (the prior) for the first two and 1.0 for ``keepdim``."""
    pyro.set_rng_seed(0)
    with pytest.raises(ModelSpecError, match=r"observed site 'y' .*block \['z'\].*'p' \(dim -1, size 3\).*"
                                             r"sequential plate"):
        _mcmc(model, 2, Y)


def test_the_count_model_with_a_sequential_plate_has_the_exact_conditional():
    """Guard (passes on the old code too): the form the error advises, one site per element, gives each element's
    exact full conditional (its chain is checked against the enumerated 0.7909 in the slow test below)."""
    kernel = Gibbs(_sum_of_a_sequential_plate)
    kernel.setup(0, Y)
    logits, _ = kernel.log_conditional(["z_0"], {"z_0": torch.tensor(0.0), "z_1": torch.tensor(1.0),
                                                 "z_2": torch.tensor(1.0)})
    log_one = math.log(0.2) + dist.Normal(3.0, 0.5).log_prob(Y)
    log_zero = math.log(0.8) + dist.Normal(2.0, 0.5).log_prob(Y)
    torch.testing.assert_close(logits.softmax(-1)[..., 1], torch.sigmoid(log_one - log_zero))


def _exact_inside(y):
    """p(z_i = 1 | y_i) of :func:`_each_inside`, ``[3]``."""
    log_one = math.log(0.2) + dist.Normal(1.0, 0.5).log_prob(y)
    log_zero = math.log(0.8) + dist.Normal(0.0, 0.5).log_prob(y)
    return torch.sigmoid(log_one - log_zero)


def test_a_site_reading_its_element_inside_the_plate_has_the_exact_conditional():
    """Guard: each y_i inside the plate gives the exact p(z_i = 1 | y_i), the three elements resampled at once."""
    y = torch.tensor([0.1, 0.9, 0.6])
    kernel = Gibbs(_each_inside)
    kernel.setup(0, y)
    logits, _ = kernel.log_conditional(["z"], {"z": torch.zeros(3)})
    torch.testing.assert_close(logits.softmax(-1)[..., 1], _exact_inside(y))


@pytest.mark.slow  # statistical: two chains against enumeration (about 30 s)
def test_the_chains_of_the_sampleable_forms_match_enumeration():
    """Guard: the sequential count model's chain gives P(z_i = 1 | y = 3) = 0.7909 (enumerated) and the in-plate
    model's chain p(z_i = 1 | y_i), within 5 Monte Carlo standard errors."""
    exact = _exact_count_posterior()
    assert abs(exact - 0.7909) < 1e-4
    pyro.set_rng_seed(0)
    samples = _mcmc(_sum_of_a_sequential_plate, 1500, Y).get_samples()
    z = torch.stack([samples[f"z_{i}"] for i in range(3)], -1).double()
    y = torch.tensor([0.1, 0.9, 0.6])
    z_inside = _mcmc(_each_inside, 1000, y).get_samples()["z"].double()
    for draws, target in ((z, [exact] * 3), (z_inside, _exact_inside(y).tolist())):
        for i in range(3):
            x = draws[:, i].numpy()
            assert abs(x.mean() - target[i]) < 5 * float(az.mcse(x[None])) + 1e-3, (i, x.mean(), target[i])


def test_the_checks_read_nothing_from_the_device(host_reads):
    """The checks compare shapes only: a conditional of a well-formed model reads no tensor value (without the
    distributions' own argument validation, which reads them)."""
    y = torch.tensor([0.1, 0.9, 0.6])
    kernel = Gibbs(_each_inside)
    kernel.setup(0, y)
    with pyro.validation_enabled(False):
        host_reads.clear()
        kernel.log_conditional(["z"], {"z": torch.zeros(3)})
    assert host_reads == []


def _subsampled(y, size):
    with pyro.plate("data", len(y), subsample_size=size) as idx:
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.2)))
        pyro.sample("y", dist.Normal(z, 0.5), obs=y[idx])


def test_a_subsampled_plate_is_refused_as_by_hmc():
    """Fails before: the conditional of z_i was that of Pyro's scaled terms, p(z_i | y_i)^(N/B) (tempered:
    sharper than the posterior), and the chain ran on.  A "subsample" of the whole plate is no subsample."""
    y = torch.tensor([0.1, 0.9, 0.6, 0.3])
    with pytest.raises(ModelSpecError, match=r"plate 'data' subsamples 2 of its 4 elements.*subsample_size"):
        Gibbs(_subsampled).setup(0, y, 2)
    Gibbs(_subsampled).setup(0, y, 4)


def test_a_scale_the_model_asks_for_is_the_chain_s_target():
    """Guard: under ``poutine.scale(scale=s)`` the chain targets the scaled (tempered) density, the potential of
    Pyro's own MCMC kernels: the conditional's log-odds are ``s`` times the unscaled ones."""
    y = torch.tensor([0.1, 0.9, 0.6])
    logits = {}
    for s in (1.0, 2.5):
        kernel = Gibbs(poutine.scale(_each_inside, scale=s))
        kernel.setup(0, y)
        logits[s], _ = kernel.log_conditional(["z"], {"z": torch.zeros(3)})
    log_odds = {s: v[..., 1] - v[..., 0] for s, v in logits.items()}
    torch.testing.assert_close(log_odds[2.5], 2.5 * log_odds[1.0])
