"""from_mcmc on models with observed placeholder sites (hybridpgm/diagnostics/sampler_data.py): the evidence of
``MarkovNet.model`` under Gibbs is left out of the data groups with the warning ``from_pyro_svi`` gives."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS

from hybridpgm.diagnostics import from_mcmc
from hybridpgm.errors import DiagnosticsWarning
from hybridpgm.graphs import ising_grid
from hybridpgm.graphs.mrf_pyro_model import PLACEHOLDER
from hybridpgm.infer import Gibbs
from tests.diagnostics.arviz_groups import group_names


def _gibbs_on_a_grid(evidence):
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    grid = ising_grid(2, 2, coupling=0.4 * torch.randn(4), field=0.3 * torch.randn(4))
    mcmc = MCMC(Gibbs(grid.model), num_samples=20, warmup_steps=5, num_chains=1, disable_progbar=True)
    mcmc.run(evidence)
    return mcmc


def test_from_mcmc_warns_that_a_markov_nets_evidence_is_left_out_of_log_likelihood():
    """The audit (17, finding 1): Gibbs on MarkovNet.model with x_0_0 observed gave posterior and sample_stats
    only and no warning, so the user learnt of the gap from az.loo's 'log likelihood not found'.  The observed
    site is a placeholder (its log-probability is -log 2 for every value), left out as from_pyro_svi leaves it
    out: now with the same DiagnosticsWarning, naming the site, why, and what to do, at the user's line."""
    mcmc = _gibbs_on_a_grid({"x_0_0": torch.tensor(1)})
    with pytest.warns(DiagnosticsWarning) as record:
        idata = from_mcmc(mcmc)
    assert group_names(idata) == ["posterior", "sample_stats"]
    [warning] = [w for w in record if issubclass(w.category, DiagnosticsWarning)]
    message = str(warning.message)
    assert "['x_0_0']" in message and "placeholder" in message and "log_likelihood" in message
    assert "mrf.distribution(context=...)" in message and "log_likelihood=False" in message
    assert warning.filename == __file__


def test_from_mcmc_warns_for_the_placeholders_of_posterior_predictive_alone():
    """posterior_predictive leaves the placeholder out too, so it warns without log_likelihood as well."""
    mcmc = _gibbs_on_a_grid({"x_0_0": torch.tensor(1)})
    with pytest.warns(DiagnosticsWarning, match=r"\['x_0_0'\].*posterior_predictive"):
        idata = from_mcmc(mcmc, log_likelihood=False, posterior_predictive=True)
    assert group_names(idata) == ["posterior", "sample_stats"]


def test_from_mcmc_keeps_the_data_beside_a_placeholder_and_names_the_placeholder_only():
    """A model observing real data y and a placeholder p: y's log-likelihood is kept, p is named."""
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 3):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=torch.tensor([0.1, -0.2, 0.4]))
        pyro.sample("p", dist.Categorical(logits=torch.zeros(2)), obs=torch.tensor(1),
                    infer={PLACEHOLDER: "observe p jointly"})

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), num_samples=10, warmup_steps=5, num_chains=1, disable_progbar=True)
    mcmc.run()
    with pytest.warns(DiagnosticsWarning, match=r"\['p'\].*observe p jointly"):
        idata = from_mcmc(mcmc)
    assert list(idata["log_likelihood"].data_vars) == ["y"]
    assert list(idata["observed_data"].data_vars) == ["y"]


@pytest.mark.parametrize("evidence, log_likelihood", [({"x_0_0": torch.tensor(1)}, False), (None, True)])
def test_from_mcmc_is_silent_without_a_replay_or_without_observed_sites(evidence, log_likelihood):
    """Guard (passes before and after the fix): log_likelihood=False replays nothing, and a Markov network run
    with no evidence observes no site, so nothing is left out and nothing is said."""
    mcmc = _gibbs_on_a_grid(evidence)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticsWarning)
        idata = from_mcmc(mcmc, log_likelihood=log_likelihood)
    assert group_names(idata) == ["posterior", "sample_stats"]
