"""Exact posterior samples (:func:`hybridpgm.infer.exact.posterior_sample`): brute-force probabilities,
goodness of fit, soft and continuous evidence, barren nodes drawn forward, rows in log space, chunks and groups."""

import contextlib
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import bn_contract
from hybridpgm.infer import exact as exact_module
from hybridpgm.infer.exact import posterior_sample
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import (
    brute_joint,
    in_space,
    random_bn,
    single_thread,  # noqa: F401 (autouse fixture)
    sprinkler,
)


def _complete(bn, samples: dict) -> torch.Tensor:
    """``[S, N]`` log p(x) of sampled complete assignments."""
    shape = samples[bn.nodes[0]].shape
    with torch.no_grad():
        return bn.log_prob({v: samples[v].reshape(-1) for v in bn.nodes}).reshape(shape)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 5), zeros=st.booleans(), dtype=st.sampled_from(
    [torch.float64, torch.float32]), prob=st.booleans(), data=st.data())
def test_posterior_samples_have_their_brute_force_probability(seed, n, zeros, dtype, prob, data):
    """Three evidence rows, each node observed in some rows (-1 elsewhere) or none: every sample keeps the
    evidence and its probability (the product of the conditionals it was drawn from) is brute force's
    p(x | e_n) = p(x) / p(e_n), in probability space or (forced) log space."""
    bn = random_bn(seed, n, zeros=zeros, dtype=dtype)
    rows, logp = brute_joint(bn)
    possible = rows[torch.isfinite(logp)]
    picks = data.draw(st.lists(st.integers(0, len(possible) - 1), min_size=3, max_size=3))
    observed = data.draw(st.lists(st.sampled_from(bn.nodes), unique=True, max_size=n - 1))
    ev = {}
    for v in observed:
        hide = torch.tensor(data.draw(st.lists(st.booleans(), min_size=3, max_size=3)))
        ev[v] = torch.where(hide, -1, possible[picks, bn.nodes.index(v)])
    with in_space(prob), _sampling_spaces() as spaces:
        samples, log_p = posterior_sample(bn, 300, ev or {"x0": torch.full((3,), -1)},
                                          generator=torch.Generator().manual_seed(seed), return_log_prob=True)
    assert spaces == [("prob" if prob else "log", 3)]
    assert set(samples) == set(bn.nodes) and samples["x0"].shape == (300, 3) and log_p.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-4  # float32 tables: 6e-8 relative per factor
    torch.testing.assert_close(log_p.double(), (_complete(bn, samples) - bn.log_evidence(ev or None)).double(),
                               atol=tol, rtol=0)
    for v, x in ev.items():
        seen = x >= 0
        assert torch.equal(samples[v][:, seen], x[seen].expand(300, -1))


@contextlib.contextmanager
def _sampling_spaces():
    """``[(space, rows)]`` of every :func:`sample_plan` call of :func:`posterior_sample`."""
    seen, real = [], exact_module.sample_plan

    def spy(plan, operands, names, num_samples, generator=None, with_log_prob=False, space="log"):
        seen.append((space, operands[-1].shape[0]))  # the last operand is the [rows] anchor
        return real(plan, operands, names, num_samples, generator, with_log_prob, space)

    with mock.patch.object(exact_module, "sample_plan", spy):
        yield seen


def test_posterior_sample_rows_under_the_floor_are_redrawn_in_log_space():
    """A float32 root with four children that are almost never 1: the row that observes all four at 1
    (p(e) = 1e-20, under float32's floor of 1e-15) is sampled again alone in log space, with brute force's
    posterior probabilities; the other row stays in probability space."""
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    for i in range(4):
        bn.add(f"b{i}", cpd.Table([[1 - 1e-5, 1e-5], [1 - 2e-5, 2e-5]], ["a"]))
    ev = {f"b{i}": torch.tensor([0, 1]) for i in range(4)}
    with _sampling_spaces() as spaces:
        samples, log_p = posterior_sample(bn, 100, ev, generator=torch.Generator().manual_seed(0),
                                          return_log_prob=True)
    assert spaces == [("prob", 2), ("log", 1)]
    post = bn.double().posterior("a", ev)  # [2, 2]
    # float32 tables (1e-5 entries rounded to 6e-8 relative) and float32 logs of probabilities near one
    assert torch.allclose(log_p.double(), post.log()[torch.arange(2), samples["a"]], atol=1e-5)


def test_posterior_sample_frequencies_follow_the_posterior():
    """Chi-square goodness of fit of 40,000 draws of (rain, sprinkler) given wet grass (fixed seed:
    deterministic; a wrong conditional gives a statistic in the hundreds)."""
    bn = sprinkler().double()
    rows, logp = brute_joint(bn)
    n = 40_000
    s = bn.sample(n, evidence={"wet": 1}, generator=torch.Generator().manual_seed(0))
    assert set(s) == {"rain", "sprinkler", "wet"} and s["rain"].shape == (n,) and bool((s["wet"] == 1).all())
    wet = rows[:, 2] == 1
    p = (logp[wet] - logp[wet].logsumexp(0)).exp()  # over (rain, sprinkler) in rows order
    counts = torch.bincount(2 * s["rain"] + s["sprinkler"], minlength=4).double()
    assert torch.equal(2 * rows[wet, 0] + rows[wet, 1], torch.arange(4))
    assert p[0] == 0 and counts[0] == 0  # no rain, no sprinkler: the grass cannot be wet
    assert stats.chisquare(counts[1:].numpy(), (n * p[1:]).numpy()).pvalue > 1e-4


def test_posterior_samples_with_soft_evidence_and_an_observed_gaussian():
    """Soft evidence and a continuous observation weight the samples as they weight the posterior:
    log p(x | e) = log p(x) + log L(x_wet) - log p(e)."""
    bn = sprinkler().double()
    lik = torch.tensor([[0.2, 0.9], [0.7, 0.1]], dtype=torch.float64)
    soft = {"wet": Likelihood(lik)}
    samples, log_p = posterior_sample(bn, 200, soft, generator=torch.Generator().manual_seed(1), return_log_prob=True)
    want = _complete(bn, samples) + lik.log()[torch.arange(2), samples["wet"]] - bn.log_evidence(soft)
    torch.testing.assert_close(log_p, want, atol=1e-12, rtol=0)
    mixed = BayesNet()
    mixed.add("z", cpd.Table([0.3, 0.7]))
    mixed.add("x", cpd.LinearGaussian(torch.tensor([-1.0, 2.0]), scale=torch.tensor([1.0, 0.5]), parents=["z"]))
    x = torch.tensor([1.0, -0.5, 2.2])
    got, log_p = posterior_sample(mixed, 100, {"x": x}, return_log_prob=True)
    assert torch.equal(got["x"], x.expand(100, 3))
    torch.testing.assert_close(log_p, mixed.posterior("z", {"x": x}).log()[torch.arange(3), got["z"]])
    # x is barren given z: drawn from its Gaussian given z = 1, N(2, 0.5^2)
    got, log_p = posterior_sample(mixed, 20_000, {"z": 1}, generator=torch.Generator().manual_seed(2),
                                  return_log_prob=True)
    assert got["x"].dtype == torch.float32 and bool((got["z"] == 1).all())
    torch.testing.assert_close(log_p, torch.distributions.Normal(2.0, 0.5).log_prob(got["x"]))
    assert stats.kstest(got["x"].numpy(), stats.norm(2.0, 0.5).cdf).pvalue > 1e-4


def test_posterior_sampling_names_impossible_rows_and_splits_big_batches(monkeypatch):
    bn = sprinkler().double()
    ev = {"rain": torch.tensor([0, 0, 1]), "sprinkler": torch.tensor([0, 0, 0]), "wet": torch.tensor([0, 1, 1])}
    with pytest.raises(EvidenceError, match=r"probability zero .* row\(s\) \[1\]; posterior sampling"):
        bn.sample(4, evidence=ev)
    chunks = []
    real = bn_contract.in_row_chunks
    monkeypatch.setattr(bn_contract, "ROW_CHUNK_BYTES", {"cpu": 1})  # one row per chunk
    monkeypatch.setattr("hybridpgm.infer.exact.in_row_chunks",
                        lambda ev, chunk, fn, *rest: chunks.append(chunk) or real(ev, chunk, fn, *rest))
    ev = {"wet": torch.tensor([1, 0, 1, -1])}
    samples, log_p = posterior_sample(bn, 50, ev, return_log_prob=True)
    assert chunks == [1] and samples["rain"].shape == (50, 4)
    torch.testing.assert_close(log_p, _complete(bn, samples) - bn.log_evidence(ev), atol=1e-12, rtol=0)


def test_barren_nodes_are_drawn_from_their_tables():
    """Given rain, sprinkler and wet have no observed descendant: chi-square goodness of fit of 40,000 draws of
    (sprinkler, wet) against the exact posterior joint (fixed seed; drawing either node from the wrong row of
    its table gives a statistic in the thousands)."""
    bn = sprinkler().double()
    n = 40_000
    for rain in (0, 1):
        with _sampling_spaces() as spaces:
            s = bn.sample(n, evidence={"rain": rain}, generator=torch.Generator().manual_seed(rain))
        assert spaces == [("prob", 1)]  # the contraction over rain alone; the other two drawn forward
        p = bn.posterior(["sprinkler", "wet"], {"rain": rain}, joint=True).detach().reshape(-1)
        counts = torch.bincount(2 * s["sprinkler"] + s["wet"], minlength=4).double()
        assert bool((s["rain"] == rain).all()) and bool((counts[p == 0] == 0).all())
        assert stats.chisquare(counts[p > 0].numpy(), (n * p[p > 0]).numpy()).pvalue > 1e-4


def _continuous_chain() -> BayesNet:
    """z -> x (Gaussian) -> y (a net of x and a context input c): y's table has a row per row and sample
    once x is drawn."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("z", cpd.Table([0.3, 0.7]))
    bn.add("x", cpd.LinearGaussian(torch.tensor([-1.0, 2.0]), scale=torch.tensor([1.0, 0.5]), parents=["z"]))
    bn.add("y", cpd.Neural(torch.nn.Linear(4, 3), parents=["z", "x"], cardinality=3, context=["c"]))
    return bn


def test_barren_continuous_parents_give_each_sample_its_own_table():
    """Every sample's log-probability is the model's (bn.log_prob of the completed row, given the evidence),
    and y's frequencies match the mean of its drawn conditionals (a z-test, fixed seed)."""
    bn = _continuous_chain()
    c = torch.tensor([[-1.0], [0.5]])
    ev = {"z": torch.tensor([1, 0]), "c": c}
    s = 4000
    got, log_p = posterior_sample(bn, s, ev, generator=torch.Generator().manual_seed(3), return_log_prob=True)
    assert got["x"].shape == (s, 2) and got["y"].dtype == torch.long and "c" not in got
    with torch.no_grad():
        inputs = {"c": c.repeat(s, 1)}
        want = bn.log_prob({v: got[v].reshape(-1) for v in bn.nodes}, inputs).reshape(s, 2)
        p_z = torch.tensor([0.3, 0.7]).log()[ev["z"]]
        torch.testing.assert_close(log_p, want - p_z, atol=1e-5, rtol=0)  # float32 net and densities
        onehot = torch.nn.functional.one_hot(got["z"].reshape(-1), 2).float()
        feats = torch.cat([onehot, got["x"].reshape(-1, 1), c.repeat(s, 1)], -1)
        p = bn.cpds["y"].net(feats).softmax(-1)  # [s * 2, 3]: each sample's own conditional
    hits = torch.nn.functional.one_hot(got["y"].reshape(-1), 3).float()
    z = (hits - p).sum(0) / (p * (1 - p)).sum(0).sqrt()
    assert float(z.abs().max()) < 4


def test_an_unobserved_continuous_ancestor_of_the_evidence_is_named():
    bn = _continuous_chain()
    with pytest.raises(EvidenceError, match="continuous node 'x' must be observed"):
        posterior_sample(bn, 5, {"y": torch.tensor([1]), "c": torch.tensor([[0.0]])})


def test_posterior_samples_of_rows_split_by_evidence_pattern(monkeypatch):
    """Rows grouped by which inner evidence nodes they observe (one contraction per group) keep their order,
    their evidence and brute force's probabilities."""
    from hybridpgm.infer import row_groups

    monkeypatch.setattr(exact_module, "choose_split",  # split on every inner evidence node whatever the cost
                        lambda bn, ev, targets, queries=(): row_groups.inner_nodes(bn, ev, targets))
    bn = sprinkler().double()
    ev = {"sprinkler": torch.tensor([0, -1, 1, -1, 1]), "wet": torch.tensor([1, 1, 0, 0, 1])}
    with _sampling_spaces() as spaces:
        samples, log_p = posterior_sample(bn, 200, ev, generator=torch.Generator().manual_seed(4),
                                          return_log_prob=True)
    assert sorted(rows for _, rows in spaces) == [2, 3]  # sprinkler missing, observed
    assert torch.equal(samples["wet"], ev["wet"].expand(200, -1))
    seen = ev["sprinkler"] >= 0
    assert torch.equal(samples["sprinkler"][:, seen], ev["sprinkler"][seen].expand(200, -1))
    assert bool((samples["sprinkler"][:, ~seen] == 1).any()) and bool((samples["sprinkler"][:, ~seen] == 0).any())
    torch.testing.assert_close(log_p, _complete(bn, samples) - bn.log_evidence(ev), atol=1e-12, rtol=0)
