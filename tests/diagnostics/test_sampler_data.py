"""ArviZ data of MCMC runs and importance/AIS log-weights (hybridpgm/diagnostics/sampler_data.py)."""

import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from hybridpgm.diagnostics import from_importance, from_mcmc
from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import Gibbs


def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_gibbs_mcmc_keeps_chains_for_rhat():
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7])))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), parents=["a"]))
    mcmc = MCMC(Gibbs(bn.model), num_samples=300, warmup_steps=20, num_chains=2, disable_progbar=True)
    mcmc.run({"b": torch.tensor([1])})
    idata = from_mcmc(mcmc)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 300
    exact = bn.posterior(["a"], {"b": torch.tensor([1])})["a"][0, 1].item()
    assert float(idata.posterior["a"].mean()) == pytest.approx(exact, abs=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(az.rhat(idata)["a"].max()) < 1.05


def test_importance_weights_and_samples():
    log_w = torch.randn(100, 3)
    idata = from_importance(log_w, {"z": torch.randn(100, 2)})
    assert idata.sample_stats["log_weight"].shape == (1, 100, 3)
    assert idata.posterior["z"].shape == (1, 100, 2)
    with pytest.raises(DataError, match="draws"):
        from_importance(log_w, {"z": torch.randn(99)})
    with pytest.raises(DataError, match="K or K x N"):
        from_importance(torch.zeros(2, 2, 2))


@pytest.mark.parametrize("log_weights, match", [
    (torch.tensor([0.0, float("nan"), 1.0]), "NaN or \\+inf"),
    (torch.tensor([[0.0, 1.0], [float("inf"), 2.0]]), "NaN or \\+inf"),
    (torch.zeros(0), "K >= 1"),
    (torch.arange(5), "floating point, got dtype torch.int64"),
])
def test_from_importance_refuses_log_weights_that_are_not_finite_floats(log_weights, match):
    with pytest.raises(DataError, match=match):
        from_importance(log_weights)


def test_from_importance_keeps_a_zero_weight():
    log_weights = torch.tensor([0.5, float("-inf"), -1.0])
    kept = np.asarray(from_importance(log_weights)["sample_stats"]["log_weight"]).reshape(-1)
    np.testing.assert_array_equal(kept, log_weights.numpy())


def test_from_importance_takes_samples_as_lists_and_names_a_wrong_count():
    """Before, a list of draws raised Python's AttributeError ('list' object has no attribute 'shape')."""
    log_weights = torch.randn(3, dtype=torch.float64)
    idata = from_importance(log_weights, {"z": [0.5, 1.0, 2.0]})
    assert np.asarray(idata.posterior["z"]).reshape(-1).tolist() == [0.5, 1.0, 2.0]
    for samples in ({"z": [1, 2]}, {"z": 1.0}):
        with pytest.raises(DataError, match="samples must have 3 draws like the log-weights"):
            from_importance(log_weights, samples)
    with pytest.raises(DataError, match="samples must be tensors or arrays of numbers"):
        from_importance(log_weights, {"z": ["a", "b", "c"]})


def test_from_mcmc_refuses_an_mcmc_that_has_not_run_and_a_dict_of_samples():
    """An MCMC that has not run gave an empty object (KeyError on its posterior); get_samples()'s dict a raw
    AttributeError."""
    from pyro.infer import NUTS

    mcmc = MCMC(NUTS(global_model), num_samples=5, warmup_steps=2, disable_progbar=True)
    with pytest.raises(DataError, match="holds no samples: call mcmc.run"):
        from_mcmc(mcmc)
    with pytest.raises(DataError, match="takes a pyro.infer.MCMC run, got dict.*make_inference_data"):
        from_mcmc({"mu": torch.randn(2, 5)})
