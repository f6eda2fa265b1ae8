"""Factors of exact BN queries: barren pruning, dims without tensors, and the cached tables."""

import copy

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import factor_dims, factors, relevant
from tests.graphs.bn_helpers import brute_joint, brute_posterior, random_bn, sprinkler


def test_relevant_is_the_ancestral_closure():
    bn = sprinkler()
    facts = network_facts(bn)
    assert relevant(facts, {"sprinkler"}) == {"rain", "sprinkler"}
    assert relevant(facts, {"wet"}) == {"rain", "sprinkler", "wet"}
    assert relevant(facts, {"rain"}) == {"rain"}


def test_factor_dims_equal_the_dims_of_the_built_factors():
    bn = random_bn(7, 6)
    facts = network_facts(bn)
    torch.manual_seed(0)
    s = bn.sample(4)
    for evidence in ({}, {"x5": s["x5"]}, {"x5": s["x5"], "x2": torch.tensor([0, -1, 1, -1])},
                     {"x1": s["x1"], "x3": torch.tensor([-1, 0, 0, -1]), "x4": s["x4"]}):
        ev = parse_evidence(bn, evidence)
        keep = relevant(facts, set(bn.nodes))
        tensors, dims = factors(facts, ev, keep, "log")
        assert factor_dims(facts, set(ev.observed), list(ev.partial), keep) == dims
        for t, d in zip(tensors, dims):
            assert t.dim() == len(d)
        probs, _ = factors(facts, ev, keep, "prob")
        for t, p in zip(tensors, probs):
            torch.testing.assert_close(t.exp(), p)


def test_cached_table_follows_in_place_updates():
    bn = sprinkler()
    facts = network_facts(bn)
    keep = relevant(facts, {"rain"})
    ev = parse_evidence(bn, {})
    with torch.no_grad():
        first, _ = factors(facts, ev, keep, "prob")
        again, _ = factors(facts, ev, keep, "prob")
        assert again[0] is first[0]  # normalised once, reused
        before = bn.posterior("rain", {"wet": 1}).clone()
        bn.cpds["rain"].logits.copy_(torch.tensor([0.5, 0.5]).log())  # an optimizer step, in place
        updated, _ = factors(facts, ev, keep, "prob")
        torch.testing.assert_close(updated[0], torch.tensor([0.5, 0.5]))
        assert not torch.allclose(bn.posterior("rain", {"wet": 1}), before)


def test_learnable_tables_are_not_cached_when_gradients_are_on():
    bn = sprinkler()
    facts = network_facts(bn)
    tensors, _ = factors(facts, parse_evidence(bn, {}), relevant(facts, {"rain"}), "log")
    assert tensors[0].requires_grad  # sprinkler's tables are learnable parameters


def test_cached_table_follows_a_move_to_another_dtype():
    bn = sprinkler()
    with torch.no_grad():
        before = bn.posterior("rain", {"wet": 1})
        bn.to(torch.float64)  # parameters keep their identity, their data is replaced
        after = bn.posterior("rain", {"wet": 1})
    assert before.dtype == torch.float32 and after.dtype == torch.float64
    torch.testing.assert_close(after.float(), before)


def test_a_network_built_under_inference_mode_answers_queries():
    """Its tables are inference tensors, which have no version counter; before, the table cache read it and every
    query failed ("Inference tensors do not track version counter")."""
    from hybridpgm.graphs import BayesNet, cpd

    with torch.inference_mode():
        bn = BayesNet()
        bn.add("a", cpd.Table([0.2, 0.8]))
        bn.add("b", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["a"]))
        inside = bn.posterior(["a"], {"b": torch.tensor([1])})["a"]
    outside = bn.posterior(["a"], {"b": torch.tensor([1])})["a"]
    exact = torch.tensor([0.2 * 0.1, 0.8 * 0.7])
    for got in (inside, outside):
        torch.testing.assert_close(got[0].double(), (exact / exact.sum()).double(), atol=1e-6, rtol=0)


# ---- hard evidence in half precision: the observed rows shifted in log space (bn_factors._log_shifted)

#: float16 and bfloat16 networks are answered in log space.  A log-entry l carries a rounding error of about
#: eps/2 * |l|: a row of hard evidence on a state of probability 1e-23 (l = -53, float16's spacing 2**-5 there,
#: bfloat16's 2**-2) entered the contraction's sums with relative errors of 1.6% (float16) to 12% (bfloat16),
#: and the posteriors came out 12-14 eps off, not summing to one.  Shifted by its row maximum (taken out and added
#: back in float32), each factor's entries that matter are within a few nats of 0, each rounding is eps/2
#: relative, and these three- to six-node networks take under a dozen roundings per answer (a log-sum-exp per
#: step, its softmax for a marginal): 4 eps bounds a posterior probability's error.  log p(e) is returned in the
#: network's dtype: within its own rounding of the true value (eps/2 relative) plus the contraction's 4 eps.
HALF = [torch.float16, torch.bfloat16]


def _unlikely_chain(dtype=torch.float64) -> BayesNet:
    """a -> b -> {c, d}: b = 1 has probability 1e-23 under a = 0, c = 1 about 2e-23 or 3e-23 whatever b."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=dtype)))
    bn.add("b", cpd.Table(torch.tensor([[1 - 1e-23, 1e-23], [0.4, 0.6]], dtype=dtype), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[1 - 2e-23, 2e-23], [1 - 3e-23, 3e-23]], dtype=dtype), ["b"]))
    bn.add("d", cpd.Table(torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=dtype), ["b"]))
    return bn


#: the nodes :func:`_extreme_random` observes
OBSERVED = ("x1", "x4", "x5")


def _extreme_random(seed: int, dtype) -> BayesNet:
    """Six binary or ternary nodes, up to two parents; the tables of :data:`OBSERVED` softmax(15 z) (entries down
    to about e^-60), the others softmax(z)."""
    g = torch.Generator().manual_seed(seed)
    bn = BayesNet()
    cards = [2, 3, 2, 3, 2, 2]
    for i, k in enumerate(cards):
        parents = sorted(torch.randperm(i, generator=g)[:min(i, 2)].tolist()) if i else []
        spread = 15 if f"x{i}" in OBSERVED else 1
        logits = spread * torch.randn([cards[p] for p in parents] + [k], generator=g, dtype=torch.float64)
        bn.add(f"x{i}", cpd.Table(logits.softmax(-1).to(dtype), [f"x{p}" for p in parents]))
    return bn


def _enumerated(bn_half: BayesNet, evidence: dict, queries: list):
    """float64 enumeration of the half-precision network (its rounded tables widened): ``(log p(e) [N],
    {query: [N, card]})``; a value of -1 leaves the node unobserved in that row."""
    wide = copy.deepcopy(bn_half).to(torch.float64)
    rows, logp = brute_joint(wide)
    n = len(next(iter(evidence.values())))
    log_e, post = [], {q: [] for q in queries}
    for i in range(n):
        row = {v: int(x[i]) for v, x in evidence.items() if int(x[i]) >= 0}
        keep = torch.ones(len(rows), dtype=torch.bool)
        for v, x in row.items():
            keep &= rows[:, wide.nodes.index(v)] == x
        log_e.append(logp[keep].logsumexp(0))
        for q in queries:
            post[q].append(brute_posterior(wide, rows, logp, row, q))
    return torch.stack(log_e), {q: torch.stack(p) for q, p in post.items()}


def _check_half(bn: BayesNet, evidence: dict, queries: list, dtype) -> None:
    eps = torch.finfo(dtype).eps
    want_e, want_post = _enumerated(bn, evidence, queries)
    got = bn.posterior(queries, evidence)
    for q in queries:
        assert got[q].dtype == dtype
        err = (got[q].double() - want_post[q]).abs().max().item()
        assert err <= 4 * eps, (q, err / eps)
    got_e = bn.log_evidence(evidence).double()
    assert ((got_e - want_e).abs() <= eps / 2 * want_e.abs() + 4 * eps).all(), ((got_e - want_e) / eps).tolist()


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_hard_evidence_on_unlikely_states(dtype):
    """Before: float16 posteriors 14 eps off ([0.053, 0.960] for a, summing to 1.013), bfloat16's 12 eps
    ([0.050, 1.047]); log p(e) of -52.86 came out -52.875 in float16 (the nearest float16 is -52.84)."""
    bn = copy.deepcopy(_unlikely_chain()).to(dtype)
    _check_half(bn, {"c": torch.tensor([1, 1, 0]), "d": torch.tensor([1, 0, 1])}, ["a", "b"], dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_half_precision_hard_evidence_on_extreme_tables(dtype, seed):
    """Half the nodes observed, every combination of their states, their tables with entries down to about e^-60
    (the old code: 4.5-15 eps off in float16, 6-11 in bfloat16; now under 3)."""
    bn = _extreme_random(seed, torch.float64).to(dtype)
    observed = list(OBSERVED)
    states = torch.cartesian_prod(*[torch.arange(bn.cardinality(v)) for v in observed])
    evidence = {v: states[:, i] for i, v in enumerate(observed)}
    _check_half(bn, evidence, ["x0", "x2", "x3"], dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_hard_evidence_observed_in_some_rows(dtype):
    """c observed in some rows only (1, of probability 2e-23 or 3e-23, in two of them), d in others: c's table
    keeps its own dim, so the row shift of a fully observed node never reached it.  Before: 14 eps off in
    float16 (a's posterior [0.053, 0.960] in the first row), 12 eps in bfloat16; now under 1."""
    bn = copy.deepcopy(_unlikely_chain()).to(dtype)
    _check_half(bn, {"c": torch.tensor([1, -1, 0, 1]), "d": torch.tensor([1, 0, -1, -1])}, ["a", "b", "c"], dtype)


@pytest.mark.parametrize("dtype, seed", [(torch.float16, 0), (torch.bfloat16, 2)])
def test_half_precision_mixed_rows_on_extreme_tables(dtype, seed):
    """Every combination of the observed nodes' states, each node left unobserved (-1) in a random third of the
    rows: a node with children (x1, maybe x4) then keeps its dim in every row (or splits the rows by pattern),
    a leaf enters through its indicator.  The partially observed nodes' posteriors too (one-hot where observed).
    Before: 5.5 eps off in float16 (seed 0), 8.8 in bfloat16 (seed 2); now 3 and 1.5.

    Not a bound for every network: bfloat16 with seed 0 is 5 eps off (7 before) in a row whose evidence is
    jointly unlikely although each factor has a likely entry (its shifted log Z is -22.6, rounded by bfloat16's
    2**-4 there); float64 contraction of the same rounded factors is exact, so the error is the log-space
    contraction's own arithmetic, which no shift of a factor reaches."""
    bn = _extreme_random(seed, torch.float64).to(dtype)
    observed = list(OBSERVED)
    states = torch.cartesian_prod(*[torch.arange(bn.cardinality(v)) for v in observed])
    g = torch.Generator().manual_seed(100 + seed)
    hidden = torch.rand(states.shape, generator=g) < 1 / 3
    evidence = {v: torch.where(hidden[:, i], -1, states[:, i]) for i, v in enumerate(observed)}
    _check_half(bn, evidence, ["x0", "x1", "x2", "x3", "x5"], dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_map_and_samples_with_mixed_rows(dtype):
    """Guard (passes before and after): with c observed in some rows only, the MAP assignment is float64's and
    its max log p(x, e) that of the unshifted factors; posterior samples agree with the float64 posterior in
    rows of likely evidence (the shifted indicator leaves the sampled states' weights as they were)."""
    bn = copy.deepcopy(_unlikely_chain()).to(dtype)
    wide = copy.deepcopy(bn).to(torch.float64)
    ev = {"c": torch.tensor([1, -1, 0]), "d": torch.tensor([1, 1, -1])}
    best, log_p = bn.map(ev, return_log_prob=True)
    want_best = wide.map(ev)
    for v in "abcd":
        assert torch.equal(best[v], want_best[v]), v
    want = wide.log_prob({v: best[v] for v in wide.nodes})
    eps = torch.finfo(dtype).eps
    assert ((log_p.double() - want).abs() <= eps / 2 * want.abs() + 4 * eps).all()
    draws = bn.sample(4000, evidence=ev, generator=torch.Generator().manual_seed(0))
    freq = draws["a"].double().mean(0)  # [num_samples, N]
    want_a = wide.posterior("a", ev)[:, 1]
    assert ((freq - want_a).abs() <= 4 * (want_a * (1 - want_a) / 4000).sqrt() + 1e-3).all(), (freq, want_a)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_map_log_prob_gets_the_shifts_back(dtype):
    """Guard (passes before and after): the MAP's max log p(x, e) is that of the unshifted factors (the shifts
    added back, as for log p(e)), and the assignment is float64's."""
    bn = copy.deepcopy(_unlikely_chain()).to(dtype)
    ev = {"c": torch.tensor([1, 0]), "d": torch.tensor([1, 1])}
    best, log_p = bn.map(ev, return_log_prob=True)
    wide = copy.deepcopy(bn).to(torch.float64)
    full = {v: best[v] for v in wide.nodes}
    want = wide.log_prob(full)
    eps = torch.finfo(dtype).eps
    assert ((log_p.double() - want).abs() <= eps / 2 * want.abs() + 4 * eps).all()
    assert torch.equal(torch.stack([best[v] for v in "ab"]), torch.stack(
        [wide.map(ev)[v] for v in "ab"]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_precision_log_factors_are_not_shifted(dtype):
    """Guard (passes before and after): float32 and float64 networks, answered in probability space and redone in
    log space only for rows under the floor, keep their log factors as they are (no shift, no cost)."""
    bn = copy.deepcopy(_unlikely_chain()).to(dtype)
    facts = network_facts(bn)
    ev = parse_evidence(bn, {"c": torch.tensor([1, 1])})
    tensors, _ = factors(facts, ev, relevant(facts, {"a", "b", "c"}), "log")
    assert tensors.log_scale == []
    ev = parse_evidence(bn, {"c": torch.tensor([1, -1]), "d": torch.tensor([-1, 0])})  # some rows only
    keep = relevant(facts, set(bn.nodes))
    tensors, _ = factors(facts, ev, keep, "log")
    assert tensors.log_scale == []
    for t, v in zip(tensors, bn.nodes):
        assert torch.equal(t, bn.cpds[v].log_table()), v
    assert torch.equal(tensors[-2], ev.partial["c"]) and torch.equal(tensors[-1], ev.partial["d"])


def _masked_net(learnable: bool) -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5], learnable=learnable))
    bn.add("b", cpd.Table([[0.5, 0.5, 0.0], [0.1, 0.3, 0.6]], ["a"], learnable=learnable))
    return bn


def _open_the_zero(how: str, bn: BayesNet) -> None:
    """Make state 2 of ``b`` possible given ``a = 0`` by changing ``b``'s support mask alone."""
    table = bn.cpds["b"]
    if how == "in place":
        with torch.no_grad():
            table.support[0, 2] = True
    elif how == "load_state_dict":
        bn.load_state_dict({"cpds.b.support": torch.ones(2, 3, dtype=torch.bool)}, strict=False)
    else:
        table.support = torch.ones(2, 3, dtype=torch.bool)


@pytest.mark.parametrize("learnable, grad", [(False, False), (False, True), (True, False)])  # the cached cases
@pytest.mark.parametrize("how", ["in place", "load_state_dict", "assigned"])
def test_cached_table_follows_a_change_of_the_support_mask(how, learnable, grad):
    """The cached log-table is the logits masked by the support: a changed mask (the logits untouched) gives
    the answers of a network built with it, with and without gradients."""
    bn, fresh = _masked_net(learnable), _masked_net(learnable)
    ev = {"b": torch.tensor([1, 2])}
    with torch.set_grad_enabled(grad):
        bn.posterior("a", ev), bn.log_evidence(ev)  # the tables cached
        _open_the_zero(how, bn)
        _open_the_zero(how, fresh)
        for got, want in ((bn.posterior("a", ev), fresh.posterior("a", ev)),
                          (bn.log_evidence(ev), fresh.log_evidence(ev))):
            torch.testing.assert_close(got.detach(), want.detach(), rtol=0, atol=0)
    # and the answers are those of the mask: p(b = 2 | a = 0) = e^0 / (0.5 + 0.5 + 1)
    torch.testing.assert_close(bn.cpds["b"].probs.detach()[0], torch.tensor([0.25, 0.25, 0.5]))


def test_tables_in_shared_memory_are_read_at_every_query():
    """Found by an audit: after ``bn.share_memory()`` (Hogwild training, or a network sent through a
    multiprocessing queue) another process's writes move no version counter of this process's tensors, and
    queries kept answering from the cached log-tables; a table in shared memory is not cached now.  The write of
    another process is played by a second tensor on the same storage (its own version counter)."""
    def build(first):
        return BayesNet().add("a", cpd.Table(first)).add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))

    bn = build([0.3, 0.7])
    bn.share_memory()
    logits = bn.cpds["a"].logits
    assert logits.is_shared()
    with torch.no_grad():
        bn.posterior("a", {"b": 1})  # warm
        other_process = torch.empty(0).set_(logits.untyped_storage(), logits.storage_offset(), logits.shape,
                                            logits.stride())
        other_process.copy_(build([0.9, 0.1]).cpds["a"].logits)
        version = logits._version
        got = bn.posterior("a", {"b": 1})
        assert logits._version == version  # nothing this process can see moved
        torch.testing.assert_close(got, build([0.9, 0.1]).posterior("a", {"b": 1}), rtol=0, atol=0)


def test_the_relevant_memo_is_bounded_as_the_split_estimates():
    """Before, the memo of ancestral closures kept every target set a network was ever queried on: 3985 entries
    (about 1.2 KB each) after 4000 ``log_evidence`` calls on the alarm network with random evidence nodes, for
    good.  It now starts afresh at the split estimates' bound (4096 sets) and gives the same closures."""
    import itertools

    from hybridpgm.infer.row_groups import _MAX_ESTIMATES

    def ancestral(targets):  # the closure by hand, from the parents
        out, new = set(), set(targets)
        while new:
            out |= new
            new = {p for v in new for p in bn.cpds[v].parents} - out
        return out

    bn = random_bn(3, 13)
    facts = network_facts(bn)
    sets = itertools.islice(itertools.chain.from_iterable(
        itertools.combinations(bn.nodes, k) for k in range(1, 14)), _MAX_ESTIMATES + 1)
    for i, targets in enumerate(sets):
        assert relevant(facts, targets) == ancestral(targets)
        assert len(facts.relevant) == (i % _MAX_ESTIMATES) + 1
    assert len(facts.relevant) == 1  # the 4097th set started it afresh


def test_queries_on_new_node_sets_keep_the_relevant_memo_bounded(monkeypatch):
    """Through the queries: with the bound at 2, a third evidence set starts the memo afresh and the answers are
    those of a network that never saw the first two."""
    from hybridpgm.infer import row_groups

    monkeypatch.setattr(row_groups, "_MAX_ESTIMATES", 2)
    bn, reference = random_bn(4, 7), random_bn(4, 7)
    torch.manual_seed(0)
    s = bn.sample(5)
    for nodes in (["x1"], ["x2", "x4"], ["x3", "x5", "x6"]):
        ev = {v: s[v] for v in nodes}
        reference.plan_cache.clear()  # a network that saw no other query
        torch.testing.assert_close(bn.log_evidence(ev), reference.log_evidence(ev), rtol=0, atol=0)
        assert 1 <= len(network_facts(bn).relevant) <= 2
