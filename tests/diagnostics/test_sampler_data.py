"""ArviZ data of MCMC runs and importance/AIS log-weights (hybridpgm/diagnostics/sampler_data.py)."""

import math
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
from tests.diagnostics.arviz_groups import group_names
from tests.diagnostics.replay_models import MIXTURE_Y, enumerated_mixture


def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _gibbs_on_two_nodes(num_samples, warmup_steps, num_chains):
    """``(bn, mcmc, from_mcmc(mcmc))`` of Gibbs on a -> b with b = 1 observed."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7])))
    bn.add("b", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), parents=["a"]))
    mcmc = MCMC(Gibbs(bn.model), num_samples=num_samples, warmup_steps=warmup_steps, num_chains=num_chains,
                disable_progbar=True)
    mcmc.run({"b": torch.tensor([1])})
    return bn, mcmc, from_mcmc(mcmc)


def test_gibbs_mcmc_keeps_chains_for_rhat():
    bn, _, idata = _gibbs_on_two_nodes(300, 20, 2)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 300
    exact = bn.posterior(["a"], {"b": torch.tensor([1])})["a"][0, 1].item()
    assert float(idata.posterior["a"].mean()) == pytest.approx(exact, abs=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert float(az.rhat(idata)["a"].max()) < 1.05


def test_importance_weights_and_samples():
    log_w = torch.randn(100, 3)
    idata = from_importance(log_w, {"z": torch.randn(100, 3, 2)})
    assert idata.sample_stats["log_weight"].shape == (1, 100, 3)
    assert idata.posterior["z"].shape == (1, 100, 3, 2)
    assert idata.sample_stats["proposal_z"].shape == (1, 100, 3, 2)
    with pytest.raises(DataError, match="draws"):
        from_importance(log_w, {"z": torch.randn(99)})
    with pytest.raises(DataError, match=r"samples must be K x N x \.\.\., got shapes \{'z': \(100, 2\)\}"):
        from_importance(log_w, {"z": torch.randn(100, 2)})
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
    assert np.asarray(idata.sample_stats["proposal_z"]).reshape(-1).tolist() == [0.5, 1.0, 2.0]
    assert set(np.asarray(idata.posterior["z"]).reshape(-1).tolist()) <= {0.5, 1.0, 2.0}
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


def _importance_run(num_draws: int = 4000):
    """x ~ q = N(0, 2^2) weighted towards p = N(3, 1) (the audit's t7_importance.py)."""
    x = 2.0 * torch.randn(num_draws, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return x, dist.Normal(3.0, 1.0).log_prob(x) - dist.Normal(0.0, 2.0).log_prob(x)


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_from_importance_posterior_summarises_the_weighted_posterior(resampling):
    """The audit: az.summary's mean of from_importance's posterior was -0.06 (the proposal's), the weighted mean
    2.97.  The posterior now holds resampled draws: their mean is the self-normalised estimate given the
    (PSIS-smoothed) weights, up to the resampling's Monte Carlo error, at most about sqrt(Var_w(x) / K)."""
    import arviz as az

    from hybridpgm.diagnostics import pareto_khat

    x, log_w = _importance_run()
    # the default call (systematic, seed 0) as the audit made it, and multinomial with a generator of its own
    kwargs = {} if resampling == "systematic" else {"resampling": resampling,
                                                    "generator": torch.Generator().manual_seed(1)}
    idata = from_importance(log_w, {"x": x}, **kwargs)
    mean = az.summary(idata, var_names=["x"], kind="stats", round_to="none").loc["x", "mean"]
    weights = torch.softmax(torch.as_tensor(pareto_khat(log_w)[0]), 0)
    weighted = float((weights * x).sum())
    error = float(((weights * (x - weighted) ** 2).sum() / len(x)).sqrt())
    assert abs(mean - weighted) < 4 * error
    assert weighted == pytest.approx(3.0, abs=0.1)  # the posterior's mean, not the proposal's 0


def test_from_importance_keeps_proposal_draws_and_log_weights_for_psis():
    """The docstring's PSIS call on the stored log-weights runs under ArviZ 0.x and 1.x (az.psislw on the
    DataArray raised a bare ValueError under 0.x); the raw draws and log-weights are kept as given."""
    from hybridpgm.diagnostics import pareto_khat

    x, log_w = _importance_run()
    idata = from_importance(log_w, {"x": x}, generator=torch.Generator().manual_seed(1))
    stats = idata["sample_stats"]
    np.testing.assert_array_equal(np.asarray(stats["proposal_x"]).reshape(-1), x.numpy())
    np.testing.assert_array_equal(np.asarray(stats["log_weight"]).reshape(-1), log_w.numpy())
    khat = pareto_khat(stats["log_weight"].values[0].T)[1]
    assert khat.shape == () and khat == pareto_khat(log_w)[1]


def test_from_importance_resamples_each_target_by_its_own_weights_and_reproducibly():
    """K x N log-weights: column n's draws are resampled by column n's weights; a seeded generator gives the
    same posterior; a zero weight is never picked."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    log_w = torch.stack([2.0 * x[:, 0], -1.0 * x[:, 1]], dim=1)  # tilted normals: means 2 and -1
    log_w[:5, 0] = float("-inf")
    samples = {"x": x}
    first = from_importance(log_w, samples, generator=torch.Generator().manual_seed(3))
    again = from_importance(log_w, samples, generator=torch.Generator().manual_seed(3))
    drawn = np.asarray(first.posterior["x"])[0]
    np.testing.assert_array_equal(drawn, np.asarray(again.posterior["x"])[0])
    assert not np.isin(drawn[:, 0], x[:5, 0].numpy()).any()
    for n, mean in enumerate([2.0, -1.0]):
        assert set(drawn[:, n].tolist()) <= set(x[:, n].tolist())
        assert drawn[:, n].mean() == pytest.approx(mean, abs=0.2)


def test_from_importance_refuses_a_target_without_weight_and_an_unknown_resampling():
    from hybridpgm.errors import ConfigError

    with pytest.raises(DataError, match=r"every log-weight is -inf.*column\(s\) \[1\]"):
        from_importance(torch.tensor([[0.0, float("-inf")]] * 3), {"x": torch.zeros(3, 2)})
    with pytest.raises(ConfigError, match="resampling must be one of \\['systematic', 'multinomial'\\], got 'sir'"):
        from_importance(torch.zeros(3), {"x": torch.zeros(3)}, resampling="sir")
    with pytest.raises(ConfigError, match=r"generator must be a torch.Generator or None \(or, deprecated, an int "
                                          "seed\), got float 0.5"):
        from_importance(torch.zeros(3), {"x": torch.zeros(3)}, generator=0.5)


def test_from_importance_with_a_generator_is_reproducible_and_leaves_the_global_generator_alone():
    """(``None``, the default, draws from torch's global stream: test_sampler_data_generator.py.)"""
    x, log_w = _importance_run(200)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    first = np.asarray(from_importance(log_w, {"x": x}, generator=torch.Generator().manual_seed(0))["posterior"]["x"])
    assert torch.equal(torch.get_rng_state(), state)
    again = from_importance(log_w, {"x": x}, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(first, np.asarray(again["posterior"]["x"]))
    other = from_importance(log_w, {"x": x}, generator=torch.Generator().manual_seed(1))
    assert not np.array_equal(first, np.asarray(other["posterior"]["x"]))


def _nuts_run(model, *args, chains=2, **kernel):
    from pyro.infer import NUTS

    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_chains=2 is more than available_cpu=1"
        mcmc = MCMC(NUTS(model, **kernel), num_samples=60, warmup_steps=30, num_chains=chains, disable_progbar=True)
        mcmc.run(*args)
    return mcmc


def _loo_by_hand(log_lik: np.ndarray) -> np.ndarray:
    """PSIS-LOO per point from a (chain, draw, point) log-likelihood: log sum_s w_s p(y_i|th_s) / sum_s w_s, with
    w the Pareto-smoothed 1 / p(y_i | th_s) (Vehtari, Gelman, Gabry 2017, eq. 10)."""
    from scipy.special import logsumexp

    from hybridpgm.diagnostics import pareto_khat

    ll = log_lik.reshape(-1, log_lik.shape[-1]).T.astype(np.float64)  # point x draws
    smoothed, _ = pareto_khat(-ll)
    return logsumexp(smoothed + ll, axis=-1) - logsumexp(smoothed, axis=-1)


def test_from_mcmc_has_log_likelihood_for_loo_equal_to_psis_loo_by_hand():
    """The audit: from_mcmc gave the posterior only, so az.loo raised 'log likelihood not found' while the docs
    send MCMC users to loo.  Now log_likelihood[c, d, n] = log N(y_n; mu[c, d], 1) and az.loo (ArviZ 0.x and 1.x)
    equals PSIS-LOO computed from that matrix."""
    import arviz as az

    y = torch.linspace(-1.0, 3.0, 12)
    mcmc = _nuts_run(global_model, y)
    idata = from_mcmc(mcmc)
    mu = torch.as_tensor(np.asarray(idata["posterior"]["mu"]))
    log_lik = np.asarray(idata["log_likelihood"]["x"])
    assert log_lik.shape == (2, 60, 12)
    expected = dist.Normal(mu[..., None], 1.0).log_prob(y).numpy()
    np.testing.assert_allclose(log_lik, expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(idata["observed_data"]["x"]), y.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True, reff=1.0)
    pointwise = np.asarray(getattr(loo, "loo_i", None) if hasattr(loo, "loo_i") else loo.elpd_i)
    np.testing.assert_allclose(pointwise, _loo_by_hand(log_lik), rtol=1e-6)
    assert float(getattr(loo, "elpd_loo", getattr(loo, "elpd", None))) == pytest.approx(pointwise.sum(), rel=1e-9)


def test_from_mcmc_marks_nuts_divergences():
    """NUTS's divergences (post-warmup draw indices per chain, Pyro's mcmc.diagnostics()) become
    sample_stats.diverging, as arviz.from_pyro gives; before, from_mcmc dropped them."""
    def funnel():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        pyro.sample("z", dist.Normal(0.0, torch.exp(v / 2)))

    mcmc = _nuts_run(funnel, step_size=2.0, adapt_step_size=False)
    reported = mcmc.diagnostics()["divergences"]
    diverging = np.asarray(from_mcmc(mcmc)["sample_stats"]["diverging"])
    assert diverging.shape == (2, 60) and diverging.dtype == bool
    for c in range(2):
        assert sorted(np.flatnonzero(diverging[c]).tolist()) == sorted(i for i in reported[f"chain {c}"] if i >= 0)
    assert diverging.sum() > 0


def test_from_mcmc_broadcasts_a_scalar_observation_across_its_plate():
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 5):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=torch.tensor(0.5))

    idata = from_mcmc(_nuts_run(model, chains=1))
    assert np.asarray(idata["observed_data"]["y"]).tolist() == [0.5] * 5
    assert idata["log_likelihood"]["y"].shape == (1, 60, 5)


def test_gibbs_mcmc_has_the_log_likelihood_of_the_evidence():
    """hybridpgm's Gibbs kernel returns discrete draws as floats; the replay gives the model its own dtype."""
    bn, mcmc, idata = _gibbs_on_two_nodes(50, 5, 1)
    a = np.asarray(idata["posterior"]["a"]).reshape(-1).astype(int)
    log_lik = np.asarray(next(iter(idata["log_likelihood"].data_vars.values()))).reshape(-1)
    np.testing.assert_allclose(log_lik, np.log(np.array([0.1, 0.8]))[a], rtol=1e-6)
    assert not np.asarray(idata["sample_stats"]["diverging"]).any()  # Gibbs reports no divergence, ever
    assert group_names(from_mcmc(mcmc, log_likelihood=False)) == ["posterior", "sample_stats"]


def test_from_mcmc_sums_a_nuts_enumerated_assignment_out_of_the_log_likelihood():
    """NUTS sums the mixture assignment c_n out of its target; the replayed log-likelihood sums it out too,
    log sum_c p(c) N(y_n; loc_c, 1), with the code of from_pyro_svi."""
    y = MIXTURE_Y
    idata = from_mcmc(_nuts_run(enumerated_mixture, y, chains=1))
    loc = torch.as_tensor(np.asarray(idata["posterior"]["loc"]))[0]
    expected = torch.logsumexp(dist.Normal(loc[:, None, :], 1.0).log_prob(y[None, :, None]) + math.log(0.5), -1)
    np.testing.assert_allclose(np.asarray(idata["log_likelihood"]["y"])[0], expected.numpy(), rtol=1e-6)
