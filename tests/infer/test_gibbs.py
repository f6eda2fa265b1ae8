"""Gibbs kernel: agreement with exact marginals (Monte Carlo error, R-hat) under pyro.infer.MCMC."""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from hybridpgm.diagnostics import from_mcmc
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import read_bif
from hybridpgm.infer import Gibbs
from tests.graphs.bn_helpers import bundled_bif, single_thread  # noqa: F401 (autouse fixture)

az = pytest.importorskip("arviz")


def _run(kernel, num_chains, num_samples, warmup, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "chains will be drawn sequentially" on small machines
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup, num_chains=num_chains,
                    disable_progbar=True)
        mcmc.run(*args)
    return mcmc


def _check_against_exact(samples, exact, rows):
    """R-hat < 1.01 and |mean - exact| < 5 MCSE for every state indicator.

    The ``rows`` replicas of one evidence row inside the data plate are
    independent Markov chains of the same posterior, so each (MCMC chain,
    replica) pair is one chain for ArviZ.
    """
    for v, p in exact.items():
        x = samples[v].reshape(samples[v].shape[0], samples[v].shape[1], rows).double()
        x = x.permute(0, 2, 1).reshape(-1, x.shape[1])  # [chains * rows, draws]
        for k in range(p.shape[-1] - 1 if p.shape[-1] == 2 else p.shape[-1]):
            ind = (x == k).double().numpy()
            rhat = float(az.rhat(ind))
            mcse = float(az.mcse(ind))
            assert rhat < 1.01, (v, k, rhat)
            assert abs(ind.mean() - float(p[k])) < 5 * mcse + 1e-3, (v, k, ind.mean(), float(p[k]), mcse)


@pytest.mark.slow  # statistical: Gibbs marginals against exact ones
def test_asia_marginals_match_exact():
    bn = read_bif(bundled_bif("asia"))
    rows = 64  # independent replicas of one evidence row, resampled in parallel inside the data plate
    ev = {"asia": torch.zeros(rows, dtype=torch.long), "xray": torch.zeros(rows, dtype=torch.long),
          "dysp": torch.zeros(rows, dtype=torch.long)}
    exact = {v: p[0] for v, p in bn.posterior(None, ev).items()}
    pyro.set_rng_seed(0)
    # 'either' is a deterministic OR of 'tub' and 'lung': sample the three jointly (single-site
    # updates would be nearly reducible); smoke and bronc form a second block
    blocks = [["tub", "lung", "either"], ["smoke", "bronc"]]
    samples = _run(Gibbs(bn.model, blocks=blocks), 2, 100, 50, ev).get_samples(group_by_chain=True)
    assert set(samples) == set(exact)
    _check_against_exact(samples, exact, rows)


@pytest.mark.slow
def test_asia_single_row_long_chains():
    bn = read_bif(bundled_bif("asia"))
    ev = {"asia": torch.tensor([0]), "xray": torch.tensor([0]), "dysp": torch.tensor([0])}
    exact = {v: p[0] for v, p in bn.posterior(None, ev).items()}
    pyro.set_rng_seed(1)
    samples = _run(Gibbs(bn.model, blocks=[["tub", "lung", "either"]]), 4, 1500, 200, ev).get_samples(
        group_by_chain=True)
    _check_against_exact(samples, exact, 1)


def _plain_model(y):
    """A hand-written Pyro model: two discrete latents and a noisy observation per data point."""
    z1 = pyro.sample("z1", dist.Bernoulli(0.3))
    with pyro.plate("data", len(y)):
        z2 = pyro.sample("z2", dist.Categorical(torch.tensor([0.2, 0.5, 0.3])))
        pyro.sample("y", dist.Normal(z1 + z2.double() - 1.0, 1.5), obs=y)


@pytest.mark.slow  # statistical: Gibbs frequencies against enumeration
def test_plain_pyro_model_matches_enumeration():
    y = torch.tensor([1.5, -0.3, 0.8], dtype=torch.float64)
    # exact posterior by enumeration
    z2v = torch.arange(3)
    log_p = {}
    for z1 in (0, 1):
        prior = np.log(0.3 if z1 else 0.7)
        per = torch.distributions.Normal(z1 + z2v[:, None].double() - 1.0, 1.5).log_prob(y)  # [3, N]
        per = per + torch.tensor([0.2, 0.5, 0.3]).double().log()[:, None]
        log_p[z1] = prior + per.logsumexp(0).sum()
    p_z1 = torch.tensor([log_p[0], log_p[1]]).softmax(0)
    pyro.set_rng_seed(0)
    mcmc = _run(Gibbs(_plain_model), 3, 200, 20, y)
    samples = mcmc.get_samples(group_by_chain=True)
    z1 = samples["z1"].double().numpy()
    idata = from_mcmc(mcmc)  # the kernel's output converts to ArviZ data (0.x and 1.x)
    assert float(az.rhat(idata)["z1"]) < 1.01
    assert abs(z1.mean() - float(p_z1[1])) < 5 * float(az.mcse(z1)) + 1e-3
    assert samples["z2"].shape == (3, 200, 3)


def test_bad_models_and_blocks():
    def continuous():
        pyro.sample("w", dist.Normal(0.0, 1.0))

    k = Gibbs(continuous)
    with pytest.raises(ModelSpecError, match="'w'"):
        k.setup(0)
    bn = read_bif(bundled_bif("asia"))
    with pytest.raises(ConfigError, match="nope"):
        Gibbs(bn.model, blocks=[["nope"]]).setup(0, {"asia": torch.tensor([0])})


def test_partially_missing_columns_are_imputed_from_their_full_conditional():
    from hybridpgm.graphs import BayesNet, cpd

    # b is a copy of a, c a noisy copy: a hidden 'a' is forced by an observed 'b'
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([[1.0, 0.0], [0.0, 1.0]], ["a"]))
    bn.add("c", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    nan = float("nan")
    data = torch.tensor([[nan, 1, 0], [nan, 0, 1], [1, nan, nan], [nan, 1, nan]])
    kernel = Gibbs(bn.model)
    pyro.set_rng_seed(0)
    kernel.setup(0, data)
    assert set(kernel.initial_params) == {"a_unobserved", "b_unobserved", "c_unobserved"}
    params = kernel.sample(kernel.initial_params)
    a = torch.where(torch.isnan(data[:, 0]), params["a_unobserved"], data[:, 0])
    b = torch.where(torch.isnan(data[:, 1]), params["b_unobserved"], data[:, 1])
    assert torch.equal(a, b) and torch.equal(a[[0, 1, 3]], data[[0, 1, 3], 1])


def _unplated_bernoulli():
    pyro.sample("z", dist.Bernoulli(torch.full((5,), 0.3)))


def _unplated_categorical_with_data():
    z = pyro.sample("z", dist.Categorical(torch.ones(3, 4) / 4))
    pyro.sample("x", dist.Normal(z.float(), 1.0), obs=torch.zeros(3))


def _partly_plated():
    with pyro.plate("p", 3):
        pyro.sample("z", dist.Categorical(torch.ones(2, 3, 4) / 4))


@pytest.mark.parametrize("model,shape,dim,size", [
    (_unplated_bernoulli, r"\(5,\)", -1, 5),
    (_unplated_categorical_with_data, r"\(3,\)", -1, 3),
    (_partly_plated, r"\(2, 3\)", -2, 2),
])
def test_batched_latent_site_outside_a_plate_is_named(model, shape, dim, size):
    mcmc = MCMC(Gibbs(model), num_samples=2, warmup_steps=0, disable_progbar=True)
    with pytest.raises(ModelSpecError, match=rf"site 'z' has batch shape {shape}.*dim {dim} \(size {size}\) "
                                             rf"belongs to no pyro.plate.*pyro.plate\('z_plate', {size}, dim={dim}\)"):
        mcmc.run()


def test_the_suggested_plate_fixes_it():
    def plated():
        with pyro.plate("z_plate", 5, dim=-1):
            pyro.sample("z", dist.Bernoulli(torch.full((5,), 0.3)))

    pyro.set_rng_seed(0)
    mcmc = MCMC(Gibbs(plated), num_samples=400, warmup_steps=0, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert z.shape == (400, 5)
    assert abs(float(z.mean()) - 0.3) < 0.05  # 2000 exact draws: sd 0.01


def _with_a_single_state_site(obs):
    a = pyro.sample("a", dist.Categorical(torch.tensor([0.3, 0.7])))
    c = pyro.sample("c", dist.Categorical(torch.tensor([1.0])))  # a variable with one state
    with pyro.plate("p", 2):
        d = pyro.sample("d", dist.Categorical(torch.ones(2, 1)))  # one state per plate element
        pyro.sample("x", dist.Normal(a.float() + c.float() + d.float(), 1.0), obs=obs)


@pytest.mark.parametrize("blocks", [None, [["a", "c"]], [["c", "a"]]])
def test_a_site_with_a_single_state_is_sampled(blocks):
    """Before: AttributeError ('NoneType' object has no attribute 'reshape'): a block whose enumeration dims all
    have size 1 looked as if no site involved it.  Whether a site involves the block is read from its enum dims."""
    obs = torch.tensor([1.2, 0.4])
    pyro.set_rng_seed(0)
    kernel = Gibbs(_with_a_single_state_site, blocks=blocks)
    samples = _run(kernel, 1, 300, 10, obs).get_samples()
    assert torch.equal(samples["c"], torch.zeros(300)) and torch.equal(samples["d"], torch.zeros(300, 2))
    log_odds = torch.distributions.Normal(1.0, 1.0).log_prob(obs).sum() + math.log(0.7) \
        - torch.distributions.Normal(0.0, 1.0).log_prob(obs).sum() - math.log(0.3)
    exact = float(torch.sigmoid(log_odds))  # p(a = 1 | x): the single-state sites change nothing
    assert abs(float(samples["a"].mean()) - exact) < 0.1  # 300 draws: sd < 0.03
    if blocks is None:  # the block ['c'] alone: its conditional counts the observed child x
        logits, supports = kernel.log_conditional(["c"], {"a": torch.tensor(1), "d": torch.zeros(2).long()})
        assert [s.tolist() for s in supports] == [[0]]
        assert torch.allclose(logits.reshape(()), torch.distributions.Normal(1.0, 1.0).log_prob(obs).sum())


def _unplated_observation(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    pyro.sample("x", dist.Normal(3.0 * z, 1.0), obs=x)


def _unplated_factor(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    pyro.factor("f", dist.Normal(3.0 * z, 1.0).log_prob(x))


def _observation_broadcast_by_its_distribution(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    pyro.sample("x", dist.Normal(3.0 * z * torch.ones(2), 1.0), obs=x[0])  # a scalar value, batch_shape (2,)


@pytest.mark.parametrize("model,kind,site", [
    (_unplated_observation, "observed", "x"),
    (_unplated_factor, "factor", "f"),
    (_observation_broadcast_by_its_distribution, "observed", "x"),
])
def test_batched_observed_or_factor_site_outside_a_plate_is_named(model, kind, site):
    """Before: no error and a wrong posterior (P(z=1 | x) ~ 0.82 instead of sigmoid(3) = 0.95): the unplated data
    dim was read as the enumeration dim of z, so each state of z was scored against one data point only."""
    mcmc = MCMC(Gibbs(model), num_samples=2, warmup_steps=0, disable_progbar=True)
    with pytest.raises(ModelSpecError, match=rf"{kind} site '{site}' has batch shape \(2,\), but its dim -1 "
                                             rf"\(size 2\) belongs to no pyro.plate.*pyro.plate\('{site}_plate', 2"):
        mcmc.run(torch.tensor([2.0, 2.0]))


def _plated_observation(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(3.0 * z, 1.0), obs=x)


def _observation_with_an_event_dim(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    loc = (3.0 * z).unsqueeze(-1).expand(z.shape + x.shape)  # z's enumeration dim stays a batch dim
    pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def _plated_factor(x):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    with pyro.plate("data", len(x)):
        pyro.factor("f", dist.Normal(3.0 * z, 1.0).log_prob(x))


@pytest.mark.parametrize("model", [_plated_observation, _observation_with_an_event_dim, _plated_factor])
def test_observations_in_a_plate_or_an_event_dim_give_the_exact_posterior(model):
    """The two ways to declare the data dim give p(z=1 | x) = sigmoid(sum_i log N(x_i|3,1) - log N(x_i|0,1))."""
    x = torch.tensor([2.0, 2.0])
    log_odds = (dist.Normal(3.0, 1.0).log_prob(x) - dist.Normal(0.0, 1.0).log_prob(x)).sum()
    exact = float(torch.sigmoid(log_odds))  # = sigmoid(3) = 0.9526
    pyro.set_rng_seed(0)
    z = _run(Gibbs(model), 1, 1000, 10, x).get_samples()["z"]
    assert abs(float(z.mean()) - exact) < 0.03  # 1000 independent exact draws: sd 0.007


# ---------------------------------------------------------------- networks in training mode


def test_gibbs_on_a_bayes_net_leaves_the_running_statistics_and_conditions_as_the_posterior():
    """Old code: every model run (setup, one per block and sweep) counted a batch and moved the running mean
    (num_batches_tracked 0 -> 9 here).  The full conditional of the only latent ``c`` is the exact
    posterior, computed with the same batch statistics."""
    from tests.graphs.bn_helpers import batch_norm_net

    bn, net = batch_norm_net()
    w = torch.tensor([1, 0, 1, 1, 0])
    u = torch.randn(5, 1, generator=torch.Generator().manual_seed(1)) * 3 + 2
    before = {n: b.clone() for n, b in net.named_buffers()}
    kernel = Gibbs(bn.model)
    pyro.set_rng_seed(0)
    samples = _run(kernel, 1, 5, 1, {"w": w}, None, {"u": u}).get_samples()
    assert samples["c"].shape == (5, 5)
    kernel.setup(0, {"w": w}, None, {"u": u})
    logits, supports = kernel.log_conditional(["c"], {})
    assert int(net[1].num_batches_tracked) == 0 and net.training
    assert all(torch.equal(b, net.get_buffer(n)) for n, b in before.items())
    assert [s.tolist() for s in supports] == [[0, 1]]
    exact = bn.posterior("c", {"w": w, "u": u})
    assert torch.allclose(logits.softmax(-1), exact, rtol=1e-6, atol=1e-9)


class _Normed(torch.nn.Module):
    """A hand-written Pyro model, a method of a module with a batch norm in training mode."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(1)

    def model(self, x):
        z = pyro.sample("z", dist.Bernoulli(0.5))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=self.norm(x[:, None])[:, 0])


def test_gibbs_leaves_the_buffers_of_the_module_behind_any_model():
    module = _Normed().train()
    pyro.set_rng_seed(0)
    samples = _run(Gibbs(module.model), 1, 4, 1, torch.tensor([0.5, 2.0, 4.0, 1.0])).get_samples()
    assert samples["z"].shape == (4,)
    assert int(module.norm.num_batches_tracked) == 0 and module.norm.training
    assert torch.equal(module.norm.running_mean, torch.zeros(1))
    assert torch.equal(module.norm.running_var, torch.ones(1))


def test_a_zero_probability_start_is_named_as_such_not_as_impossible_evidence():
    """Before, single-site Gibbs started in a state of probability zero under possible evidence (C = A xor B with
    D = C observed: p(e) = 0.5) said "impossible evidence?"; the message now names the stuck state and the remedy,
    blocks, with which the same evidence samples."""
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import Gibbs

    bn = BayesNet()
    bn.add("A", cpd.Table(torch.tensor([0.5, 0.5])))
    bn.add("B", cpd.Table(torch.tensor([0.5, 0.5])))
    bn.add("C", cpd.Table(torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]), ["A", "B"]))
    bn.add("D", cpd.Table(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ["C"]))
    evidence = {"D": torch.ones(4, dtype=torch.long)}
    pyro.set_rng_seed(0)
    kernel = Gibbs(bn.model, blocks=None)
    kernel.setup(0, evidence)
    with pytest.raises(ModelSpecError, match=r"has no support: the evidence is impossible, or the chain's state has "
                                             r"probability zero .* blocks=\[\[\.\.\.\]\]"):
        for _ in range(5):
            kernel.sample(dict(kernel.initial_params))
    pyro.set_rng_seed(0)
    kernel = Gibbs(bn.model, blocks=[["A", "B", "C"]])
    kernel.setup(0, evidence)
    state = kernel.sample(dict(kernel.initial_params))
    assert torch.equal(state["C"], torch.ones(4, dtype=state["C"].dtype))
