"""The divergent draws of an MCMC run (hybridpgm/diagnostics/mcmc_divergences.py), read by ``from_mcmc`` without
Pyro's R-hat and ESS, so that runs of 1 to 3 draws per chain are read (audit_empty: Pyro's bare AssertionError
from its split R-hat, which needs 4 draws)."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS

from hybridpgm.diagnostics import from_mcmc
from hybridpgm.diagnostics.mcmc_divergences import divergent_draws
from hybridpgm.errors import DataError, DiagnosticsWarning
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import Gibbs


ONE_DRAW = ("from_mcmc: one posterior draw; ArviZ's az.loo raises a bare IndexError on it, and az.waic, az.ess and "
            "az.rhat have no spread to estimate from (p_waic 0, ESS nan): draw more")


def funnel():
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("z", dist.Normal(0.0, torch.exp(v / 2)))


def _funnel_run(draws, chains=1):
    """NUTS on Neal's funnel with a step size that makes it diverge (this seed: at draws 2 and 3 of the first 4)."""
    pyro.set_rng_seed(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_chains=2 is more than available_cpu=1"
        mcmc = MCMC(NUTS(funnel, step_size=2.0, adapt_step_size=False), num_samples=draws, warmup_steps=5,
                    num_chains=chains, disable_progbar=True)
        mcmc.run()
    return mcmc


@pytest.mark.parametrize("draws", [1, 2, 3])
def test_from_mcmc_reads_a_run_of_fewer_than_four_draws(draws):
    """The reference: a run of 20 draws from the same seed, whose first draws are these (the step size is fixed
    and the warmup the same), read by Pyro's public diagnostics."""
    mcmc, longer = _funnel_run(draws), _funnel_run(20)
    torch.testing.assert_close(mcmc.get_samples()["v"], longer.get_samples()["v"][:draws], rtol=0, atol=0)
    reported = sorted(i for i in longer.diagnostics()["divergences"]["chain 0"] if 0 <= i < draws)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # with 1 draw, Pyro's ESS warned (with a traceback) before it asserted
        idata = from_mcmc(mcmc)
    assert [str(w.message) for w in caught] == ([ONE_DRAW] if draws == 1 else [])
    assert idata["posterior"]["v"].shape == (1, draws)
    diverging = np.asarray(idata["sample_stats"]["diverging"])
    assert diverging.shape == (1, draws) and diverging.dtype == bool
    assert np.flatnonzero(diverging[0]).tolist() == reported
    assert reported == [2] if draws == 3 else not reported  # marks checked, not only their absence


def test_divergent_draws_match_pyros_diagnostics_over_chains():
    """Guard (passes on the old code too): with enough draws, the same marks as Pyro's public diagnostics."""
    mcmc = _funnel_run(20, chains=2)
    reported = mcmc.diagnostics()["divergences"]
    diverging = divergent_draws(mcmc, 2, 20)
    for c in range(2):
        assert np.flatnonzero(diverging[c].numpy()).tolist() == sorted(i for i in reported[f"chain {c}"] if i >= 0)
    assert diverging.any()


def test_a_gibbs_run_of_one_draw():
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7])))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), parents=["a"]))
    mcmc = MCMC(Gibbs(bn.model), num_samples=1, warmup_steps=1, disable_progbar=True)
    mcmc.run({"b": torch.tensor([1])})
    with pytest.warns(DiagnosticsWarning, match=r"^from_mcmc: one posterior draw; ArviZ's az.loo raises"):
        idata = from_mcmc(mcmc)
    assert idata["posterior"]["a"].shape[:2] == (1, 1)
    assert np.asarray(idata["sample_stats"]["diverging"]).tolist() == [[False]]  # Gibbs reports none


def test_without_per_chain_diagnostics_a_short_run_is_refused_by_name():
    """A Pyro version whose MCMC keeps no per-chain diagnostics (mimicked: the attribute removed, and the public
    diagnostics read before): Pyro's public route for 4 draws and more, a named refusal below."""
    short, long = _funnel_run(3), _funnel_run(4)
    for mcmc in (short, long):
        public = mcmc.diagnostics() if mcmc is long else {}
        del mcmc._diagnostics
        mcmc.diagnostics = lambda public=public: public
    with pytest.raises(DataError, match=r"run of 3 draw\(s\) per chain.*num_samples >= 4"):
        divergent_draws(short, 1, 3)
    assert divergent_draws(long, 1, 4).tolist() == [[False, False, True, True]]
