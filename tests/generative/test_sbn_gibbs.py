import inspect
import warnings

import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.generative import SBNGibbs, SigmoidBeliefNet
from tests import generator_contract as contract
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401


@pytest.mark.parametrize("sizes, seed", [([3, 2, 2], 0), ([4, 3], 1), ([2, 2, 1, 2], 2)])
def test_full_conditional_matches_brute_force(sizes, seed):
    sbn = random_sbn(sizes, seed)
    x = binary(2, sizes[0], seed)
    gibbs = SBNGibbs(sbn)
    configs = bf.configurations(sbn)  # [S, H_l] per layer
    lp = bf.log_joint(sbn, x, configs)  # [S, B]
    S = lp.shape[0]
    flat = torch.cat(configs, -1)
    offsets = [0]
    for h in configs:
        offsets.append(offsets[-1] + h.shape[-1])
    with torch.no_grad():
        for layer in range(1, sbn.num_layers + 1):
            for unit in range(sizes[layer]):
                column = offsets[layer - 1] + unit
                # partner configuration: same everything, this unit flipped
                flipped = flat.clone()
                flipped[:, column] = 1 - flipped[:, column]
                partner = (flipped.unsqueeze(1) == flat.unsqueeze(0)).all(-1).float().argmax(1)
                on = flat[:, column] == 1
                expected = torch.where(on.unsqueeze(-1), lp - lp[partner], lp[partner] - lp)  # [S, B]
                hs = [h.unsqueeze(1).expand(S, 2, h.shape[-1]) for h in configs]
                got = gibbs.full_conditional(x, hs, layer, unit)
                assert torch.allclose(got, expected, atol=1e-4)


def test_explaining_away():
    """Two rare causes of one effect: once one cause is known, the other becomes less likely."""
    sbn = SigmoidBeliefNet([1, 2])
    with torch.no_grad():
        sbn.prior_logits.fill_(-2.0)
        sbn.decoders[0].weight.fill_(8.0)
        sbn.decoders[0].bias.fill_(-4.0)
    x = torch.ones(1, 1)
    post = bf.posterior(sbn, x)[:, 0]  # configurations (h_a, h_b) in order 00, 01, 10, 11
    configs = bf.configurations(sbn)[0]
    p_a = post[configs[:, 0] == 1].sum()
    gibbs = SBNGibbs(sbn)
    given_b = torch.sigmoid(gibbs.full_conditional(x, [torch.tensor([[0.0, 1.0]])], 1, 0))
    given_not_b = torch.sigmoid(gibbs.full_conditional(x, [torch.tensor([[0.0, 0.0]])], 1, 0))
    assert given_b.item() < 0.2 < p_a.item() < given_not_b.item()


def test_gibbs_samples_match_exact_posterior():
    sbn = random_sbn([4, 2, 2], 5, scale=1.5)
    x = binary(2, 4, 5)
    post = bf.posterior(sbn, x).detach()  # [S, B]
    samples = SBNGibbs(sbn).sample(x, num_samples=100, warmup=20, num_chains=100, seed=0)
    h1, h2 = samples.layers
    assert h1.shape == (100, 100, 2, 2) and h2.shape == (100, 100, 2, 2)
    flat = torch.cat([h1, h2], -1).reshape(-1, 2, 4)  # [draws, B, 4]
    configs = torch.cat(bf.configurations(sbn), -1)  # [S, 4]
    match = (flat.unsqueeze(1) == configs.unsqueeze(0).unsqueeze(2)).all(-1).float()  # [draws, S, B]
    empirical = match.mean(0)
    tv = 0.5 * (empirical - post).abs().sum(0)
    assert (tv < 0.04).all(), tv
    # a broken sampler (the guide's samples, never updated) is far from the posterior
    guide_only = SBNGibbs(sbn).sample(x, num_samples=1, warmup=0, num_chains=10000, seed=1)
    flat = torch.cat(guide_only.layers, -1).reshape(-1, 2, 4)
    empirical = (flat.unsqueeze(1) == configs.unsqueeze(0).unsqueeze(2)).all(-1).float().mean(0)
    assert (0.5 * (empirical - post).abs().sum(0) > 0.1).any()


def test_sample_errors_and_determinism():
    sbn = random_sbn([3, 2], 4)
    gibbs = SBNGibbs(sbn)
    x = binary(2, 3, 4)
    a = gibbs.sample(x, 3, warmup=2, num_chains=2, seed=5, init="zeros").layers[0]
    b = gibbs.sample(x, 3, warmup=2, num_chains=2, seed=5, init="zeros").layers[0]
    assert torch.equal(a, b)
    with pytest.raises(DataError, match="binary"):
        gibbs.sample(torch.full((2, 3), 0.5), 3)
    with pytest.raises(ConfigError, match="init"):
        gibbs.sample(x, 3, init="random")
    with pytest.raises(ConfigError, match="num_samples"):
        gibbs.sample(x, 0)
    with pytest.raises(ConfigError, match="SigmoidBeliefNet"):
        SBNGibbs(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_generic_gibbs_kernel_on_the_enumerated_model():
    """hybridpgm.infer.Gibbs (a pyro.infer.MCMC kernel) on sbn.enumerated_model: block Gibbs,
    one whole layer at a time, from its exact conditional; agrees with the enumerated posterior.  A long statistical
    check (320 MCMC steps), so ``slow``: the default run keeps ``enumerated_model`` under TraceEnum_ELBO
    (``test_sbn_exact.py``) and the Gibbs kernel's sites (``tests/infer/test_gibbs_sites.py``)."""
    import pyro

    from hybridpgm.generative.sbn import binary_states
    from hybridpgm.infer.gibbs import Gibbs

    sbn = random_sbn([4, 2, 2], 5, scale=1.5)
    x = binary(2, 4, 5)
    post = bf.posterior(sbn, x).detach()
    configs = torch.cat(bf.configurations(sbn), -1)
    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(Gibbs(sbn.enumerated_model, max_plate_nesting=1), num_samples=300, warmup_steps=20,
                           disable_progbar=True)
    mcmc.run(x)
    samples = mcmc.get_samples()
    states = binary_states(2, x)
    flat = torch.cat([states[samples["h1"].long()], states[samples["h2"].long()]], -1)  # [N, B, 4]
    empirical = (flat.unsqueeze(1) == configs.unsqueeze(0).unsqueeze(2)).all(-1).float().mean(0)
    tv = 0.5 * (empirical - post).abs().sum(0)
    assert (tv < 0.15).all(), tv


@pytest.mark.parametrize("seed", [2**64, -2**63 - 1, 1.5, "3", True])
def test_sample_refuses_a_seed_torch_refuses_with_a_config_error(seed):
    """Before: 2**64 reached ``torch.Generator.manual_seed`` (a raw ValueError ``Overflow when unpacking long
    long``)."""
    with pytest.raises(ConfigError, match="SBNGibbs.sample seed must be an integer"):
        SBNGibbs(SigmoidBeliefNet([3, 2])).sample(torch.zeros(2, 3), 2, warmup=1, seed=seed)


@pytest.mark.parametrize("seed", [-1, 2**64 - 1])
def test_sample_takes_every_seed_torch_takes(seed):
    """Before, ``-1`` was refused (``an integer >= 0``), though torch takes it (as every other ``seed=``)."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2])
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    first = SBNGibbs(sbn).sample(x, 3, warmup=1, seed=seed).layers[0]
    again = SBNGibbs(sbn).sample(x, 3, warmup=1, seed=seed).layers[0]
    assert first.shape == (3, 1, 2, 2) and torch.equal(first, again)


# -- generator= beside seed= -------------------------------------------------------------------------------------
def _gibbs_call(init):
    sbn = random_sbn([4, 3, 2], 6)
    x = binary(3, 4, 6)
    return lambda **kw: SBNGibbs(sbn).sample(x, 2, warmup=2, num_chains=2, init=init, **kw)


@pytest.mark.parametrize("init", ["guide", "zeros"])
def test_sample_takes_a_generator(init):
    """``generator=``, the package-wide spelling (it took only ``seed=``, while ``sweep`` took ``generator=``):
    the initial guide draw and every sweep's come from it."""
    call = _gibbs_call(init)
    contract.assert_generator_contract(call, "SBNGibbs.sample generator")


@pytest.mark.parametrize("seed", [0, 5, -1])
def test_seed_is_a_generator_seeded_with_it(seed):
    """``seed=s`` keeps working, and draws what ``generator=torch.Generator(x.device).manual_seed(s)`` draws."""
    call = _gibbs_call("guide")
    by_seed = call(seed=seed).layers
    by_generator = call(generator=torch.Generator().manual_seed(seed)).layers
    assert all(torch.equal(a, b) for a, b in zip(by_seed, by_generator))


def test_seed_and_generator_together_are_refused():
    call = _gibbs_call("guide")
    with pytest.raises(ConfigError, match=r"SBNGibbs\.sample takes seed= or generator=, not both"):
        call(seed=1, generator=torch.Generator().manual_seed(1))


def test_sweeps_generator_is_keyword_only_with_a_deprecation_period():
    """Found by an API audit: ``sweep(x, hs, generator)`` took the generator by position, where every other sampler
    takes it by keyword only.  The old call still answers, the same states, with a FutureWarning; ``sample``, which
    sweeps, does not warn."""
    assert inspect.signature(SBNGibbs.sweep).parameters["generator"].kind is inspect.Parameter.KEYWORD_ONLY
    gibbs, x = SBNGibbs(random_sbn([4, 3, 2], 6)), binary(3, 4, 6)
    with pytest.warns(FutureWarning, match=r"^SBNGibbs.sweep: pass generator= by keyword"):
        old = gibbs.sweep(x, [torch.zeros(3, 3), torch.zeros(3, 2)], torch.Generator().manual_seed(1))
    new = gibbs.sweep(x, [torch.zeros(3, 3), torch.zeros(3, 2)], generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(old, new))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        gibbs.sample(x, 2, warmup=1, generator=torch.Generator().manual_seed(1))
