"""DBM: energy, exact log Z and log p(v), mean field, the variational bound and pretraining."""

from __future__ import annotations

import functools
import re

import pytest
import torch

from hybridpgm.energy import DBM
from hybridpgm.energy.doubled_rbm import DoubledRBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer import AIS
from tests.energy.brute_force import (  # noqa: F401
    all_states,
    dbm_joint_log_weights,
    random_dbm,
    random_rbm,
    single_thread,
    total_variation,
)
from tests.generator_contract import assert_generator_contract

SIZES = [[3, 2, 2], [2, 3, 2, 2], [4, 3]]


@pytest.mark.parametrize("sizes", SIZES)
def test_log_partition_and_log_prob_match_brute_force(sizes):
    dbm = random_dbm(sizes, seed=0)
    joint = dbm_joint_log_weights(dbm)
    torch.testing.assert_close(dbm.log_partition(), torch.logsumexp(joint.flatten(), 0))
    torch.testing.assert_close(dbm.log_partition(chunk_size=2), torch.logsumexp(joint.flatten(), 0))
    v = all_states(sizes[0])
    expected = torch.logsumexp(joint.reshape(joint.shape[0], -1), 1)
    torch.testing.assert_close(dbm.unnormalized_log_prob(v), expected)
    torch.testing.assert_close(torch.logsumexp(dbm.log_likelihood(v), 0), torch.zeros((), dtype=torch.float64))


def test_energy_and_layer_conditionals_match_brute_force():
    dbm = random_dbm([3, 2, 2], seed=1)
    joint = dbm_joint_log_weights(dbm)  # v x h1 x h2
    states = [all_states(n) for n in dbm.sizes]
    x = [states[0][5:6], states[1][2:3], states[2][1:2]]
    torch.testing.assert_close(-dbm.energy(x).detach(), joint[5, 2, 1].reshape(1))
    # p(h1 | v, h2): from the joint table
    table = torch.softmax(joint[5, :, 1], 0)
    expected = table @ states[1]
    torch.testing.assert_close(torch.sigmoid(dbm.layer_logits(x, 1)).detach()[0], expected)


def test_mean_field_is_a_fixed_point_and_bound_is_below_exact():
    dbm = random_dbm([5, 4, 3], seed=2, scale=0.8)
    v = all_states(5)
    mu = dbm.mean_field(v, steps=200, tol=1e-12)
    for l in (1, 2):
        torch.testing.assert_close(mu[l], torch.sigmoid(dbm.layer_logits(mu, l)).detach())
    bound = dbm.log_likelihood_bound(v)
    exact = dbm.log_likelihood(v).detach()
    assert bool((bound <= exact + 1e-9).all())
    assert float((exact - bound).max()) < 1.0  # and not vacuous


def test_gibbs_chain_matches_exact_visible_marginal():
    dbm = random_dbm([4, 3, 2], seed=3, scale=0.8)
    exact = torch.exp(dbm.log_likelihood(all_states(4))).detach()
    state = dbm.gibbs_chain(dbm.init_chains(1000), 100)
    samples = []
    for _ in range(50):
        state = dbm.gibbs_chain(state, 1)
        samples.append(state[0])
    tv = total_variation(torch.cat(samples), exact)
    print(f"DBM [4, 3, 2] Gibbs total variation: {tv:.4f}")
    assert tv < 0.03
    assert dbm.sample(7, steps=3).shape == (7, 4)


def test_pretraining_uses_doubled_conditionals(monkeypatch):
    seen = []
    original = DoubledRBM.__init__

    def record(self, rbm, up=2.0, down=1.0):
        seen.append((up, down))
        original(self, rbm, up, down)

    monkeypatch.setattr(DoubledRBM, "__init__", record)
    torch.manual_seed(4)
    data = torch.bernoulli(torch.full((60, 6), 0.4))
    dbm = DBM([6, 4, 3, 2])
    results = dbm.pretrain(data, epochs=2, batch_size=20, progress=False, seed=0,
                           optim=functools.partial(torch.optim.SGD, lr=0.1))
    assert len(results) == 3 and all(r.steps == 6 for r in results)
    assert seen == [(2.0, 1.0), (2.0, 2.0), (1.0, 2.0)]  # bottom, middle, top RBM
    assert all(float(w.detach().abs().max()) > 0.011 for w in dbm.weights)  # every layer was trained


def test_pretraining_depends_only_on_its_seed_not_on_the_callers_stream():
    """pretrain built each layer's RBM (random init) from the caller's global stream before fit seeded it: the
    same seed gave different DBMs under two caller streams."""
    import copy

    data = torch.bernoulli(torch.full((40, 6), 0.5), generator=torch.Generator().manual_seed(0))
    base = DBM([6, 4, 3])

    def run(caller_seed, seed=1):
        dbm = copy.deepcopy(base)
        torch.manual_seed(caller_seed)
        dbm.pretrain(data, epochs=2, batch_size=10, progress=False, seed=seed,
                     optim=functools.partial(torch.optim.SGD, lr=0.1))
        return torch.cat([p.detach().flatten() for p in dbm.parameters()])

    first = run(100)
    assert torch.equal(first, run(200))
    assert not torch.equal(first, run(100, seed=2))
    with pytest.raises(ConfigError, match="DBM.pretrain seed must be an integer"):
        base.pretrain(data, progress=False, seed=1.5)


def test_load_rbms_copies_weights_and_averages_biases():
    rbms = [random_rbm(4, 3, seed=10), random_rbm(3, 2, seed=11)]
    dbm = DBM([4, 3, 2]).double()
    dbm.load_rbms(rbms)
    torch.testing.assert_close(dbm.weights[1].detach(), rbms[1].weight.detach())
    torch.testing.assert_close(dbm.biases[0].detach(), rbms[0].visible_bias.detach())
    torch.testing.assert_close(dbm.biases[1].detach(), (rbms[0].hidden_bias + rbms[1].visible_bias).detach() / 2)
    torch.testing.assert_close(dbm.biases[2].detach(), rbms[1].hidden_bias.detach())
    with pytest.raises(ModelSpecError, match="cannot take"):
        dbm.load_rbms(rbms[:1])


def test_doubled_rbm_surrogate_gradient():
    from hybridpgm.energy import RBM

    rbm = RBM(5, 3, init_scale=0.5)
    doubled = DoubledRBM(rbm, up=2.0, down=1.0)
    v = torch.bernoulli(torch.full((4, 5), 0.5))
    energy, _ = doubled.positive_phase(v)
    energy.mean().backward()
    mu = torch.sigmoid(2 * v @ rbm.weight + rbm.hidden_bias).detach()
    torch.testing.assert_close(rbm.weight.grad, -(v.T @ mu) / 4)


def test_pcd_training_improves_exact_log_likelihood():
    from hybridpgm.infer import PersistentCD
    from hybridpgm.train import fit

    torch.manual_seed(5)
    prototypes = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    data = (prototypes[torch.arange(300) % 2] - torch.bernoulli(torch.full((300, 6), 0.05))).abs()
    dbm = DBM([6, 4, 3])
    before = float(dbm.log_likelihood(data).mean().detach())
    fit(PersistentCD(dbm, k=1, num_chains=50), data, epochs=15, batch_size=20, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5))
    after = float(dbm.log_likelihood(data).mean().detach())
    assert after > before + 1.0, (before, after)
    log_z = AIS(num_chains=50, num_steps=300)(dbm, data=data).log_z
    assert float(dbm.log_likelihood_bound(data, log_z).mean()) <= after + 0.1


def test_bad_input_raises():
    with pytest.raises(ModelSpecError, match="sizes"):
        DBM([4])
    with pytest.raises(ModelSpecError, match="mean_field_steps"):
        DBM([4, 3, 2], mean_field_steps=0)
    dbm = DBM([4, 3, 2])
    with pytest.raises(DataError, match="binary"):
        dbm.log_likelihood_bound(torch.full((2, 4), 0.5))
    with pytest.raises(DataError, match=r"\(2, 5\)"):
        dbm.mean_field(dbm.check_visible(torch.zeros(2, 5)))
    with pytest.raises(DataError, match="layer 1"):
        dbm.energy([torch.zeros(1, 4), torch.zeros(1, 2), torch.zeros(1, 2)])
    with pytest.raises(ConfigError, match="method"):
        dbm.log_partition("bogus")
    with torch.no_grad():
        dbm.weights[1][0, 0] = float("nan")
    with pytest.raises(ModelSpecError, match="weights.1"):
        dbm.sample(3)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float16])
def test_visible_data_of_an_exactly_convertible_dtype_gives_the_float_answer(dtype):
    torch.manual_seed(0)
    dbm = DBM([5, 3, 2], init_scale=0.5)
    v = torch.bernoulli(torch.full((4, 5), 0.5))
    log_z = dbm.log_partition("exact")
    for method in (dbm.log_likelihood, dbm.log_likelihood_bound):
        expected = method(v, log_z)
        got = method(v.to(dtype), log_z)
        assert got.dtype == expected.dtype
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_float64_visible_data_for_a_float32_dbm_is_refused_by_name():
    dbm = DBM([5, 3])
    with pytest.raises(DataError, match=r"DBM visible data 'v' has dtype torch.float64.*torch.float32"):
        dbm.log_likelihood(torch.zeros(2, 5, dtype=torch.float64))


def test_visible_check_joins_fits_host_read():
    """Inside fit's step the DBM's value check is deferred (no host read of its own; it made three before),
    and a failed flag raises the named error when the step reads it; outside, it raises at once."""
    from hybridpgm.train.deferred_checks import deferring_checks

    dbm = DBM([4, 3, 2])
    bad = torch.tensor([[0.0, 1.0, 0.5, 1.0]])
    with deferring_checks() as pending:
        dbm.check_visible(bad)  # no raise yet
        dbm.check_visible(torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
        dbm.check_visible(torch.tensor([[True, False, True, False]]))  # bool: binary, nothing to read
    assert len(pending.flags) == 2 and not bool(pending.flags[0]) and bool(pending.flags[1])
    with pytest.raises(DataError, match=r"DBM visible data 'v' must be binary \(0/1\).*build the DBM with"):
        pending.raise_first_failure()
    with pytest.raises(DataError, match=r"DBM visible data 'v' holds NaN or inf"):
        dbm.check_visible(torch.tensor([[0.0, float("nan"), 1.0, 0.0]]))


@pytest.mark.parametrize("method", ["sample", "init_chains", "gibbs_chain"])
def test_dbm_samplers_draw_from_the_generator_given(method):
    """``generator=`` (keyword-only) on DBM.sample and the chain protocol it runs: every draw from it, the
    caller's stream untouched, ``None`` the old call (tests/energy/generator_contract.py).  Before: no such
    argument."""
    dbm = random_dbm([4, 3, 2])
    state = tuple(torch.ones(3, s, dtype=torch.float64) for s in dbm.sizes)
    draw = {"sample": lambda **kw: dbm.sample(3, steps=2, **kw),
            "init_chains": lambda **kw: dbm.init_chains(3, **kw),
            "gibbs_chain": lambda **kw: dbm.gibbs_chain(state, 2, **kw)}[method]
    assert_generator_contract(draw, f"DBM.{method} generator")


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3", None])
def test_chain_protocol_checks_its_counts(bad):
    """``init_chains(num_chains)`` and ``gibbs_chain(state, steps)`` took their counts unchecked, unlike
    ``sample`` and ``RBM.gibbs``: a negative or ``True`` step count ran zero or one sweep silently, a bad chain
    count reached torch as a raw RuntimeError/TypeError."""
    dbm = DBM([4, 3, 2])
    with pytest.raises(ConfigError, match=rf"^DBM\.init_chains num_chains must be a non-negative integer, got "
                                          rf"{re.escape(repr(bad))}$"):
        dbm.init_chains(bad)
    state = dbm.init_chains(3)
    with pytest.raises(ConfigError, match=rf"^DBM\.gibbs_chain steps must be an integer >= 0, got "
                                          rf"{re.escape(repr(bad))}$"):
        dbm.gibbs_chain(state, bad)


def test_chain_protocol_takes_integer_counts_of_any_integer_type():
    """Guard (passes before and after): zero and integer scalars (NumPy's, 0-d tensors) are counts."""
    import numpy as np

    dbm = DBM([4, 3, 2])
    assert [tuple(t.shape) for t in dbm.init_chains(0)] == [(0, 4), (0, 3), (0, 2)]
    state = dbm.init_chains(np.int64(3))
    assert [tuple(t.shape) for t in state] == [(3, 4), (3, 3), (3, 2)]
    assert dbm.gibbs_chain(state, 0) == state
    g = torch.Generator().manual_seed(0)
    one = dbm.gibbs_chain(state, torch.tensor(2), generator=g)
    assert all(torch.equal(a, b) for a, b in zip(one, dbm.gibbs_chain(state, 2, generator=g.manual_seed(0))))
