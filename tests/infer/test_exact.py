"""Exact BayesNet inference: pgmpy's VariableElimination and brute-force enumeration as references."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd, read_bif
from hybridpgm.infer.exact import posterior_sample
from tests.graphs.bn_helpers import (
    brute_joint,
    brute_posterior,
    bundled_bif,
    in_space,
    pgmpy_marginal,
    random_bn,
    single_thread,  # noqa: F401 (autouse fixture)
    sprinkler,
)

pgmpy = pytest.importorskip("pgmpy")


@pytest.mark.parametrize("name,rows", [("asia", 4), ("alarm", 2), ("child", 3)])
def test_posterior_matches_pgmpy(name, rows):
    from pgmpy.inference import VariableElimination

    bn = read_bif(bundled_bif(name))
    # tests/graphs/test_bif.py checks that read_bif's tables equal pgmpy's own parse
    ve = VariableElimination(bn.to_pgmpy())
    g = torch.Generator().manual_seed(0)
    ev_nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes), generator=g)[: max(1, len(bn.nodes) // 5)]]
    torch.manual_seed(1)
    sample = bn.sample(rows)
    evidence = {v: sample[v] for v in ev_nodes}
    with torch.no_grad():
        post = bn.posterior(None, evidence)
    assert set(post) == set(bn.nodes) - set(ev_nodes)
    for i in range(rows):
        row = {v: evidence[v][i] for v in ev_nodes}
        for v in post:
            ref = pgmpy_marginal(ve, bn, row, v)
            torch.testing.assert_close(post[v][i], ref, atol=1e-6, rtol=0)


def _hypothesis_bn():
    # (dtype, probability space): float64 and float32 networks are contracted in probability space; log space
    # (for rows of tiny evidence probability and other dtypes) is forced for both
    return st.tuples(st.integers(0, 10_000), st.integers(2, 5), st.booleans(),
                     st.sampled_from([(dt, prob) for dt in (torch.float64, torch.float32) for prob in (True, False)]))


def _brute_case(spec, data) -> tuple:
    """``(bn, rows, log p(rows), evidence, rows consistent with it)``: a random network, its joint by
    enumeration, and evidence on up to ``n - 1`` nodes drawn from a possible configuration (so it has positive
    probability)."""
    seed, n, zeros, (dtype, _) = spec
    bn = random_bn(seed, n, zeros=zeros, dtype=dtype)
    rows, logp = brute_joint(bn)
    ev_vars = data.draw(st.lists(st.sampled_from(bn.nodes), unique=True, max_size=n - 1))
    j = data.draw(st.integers(0, len(rows) - 1).filter(lambda j: torch.isfinite(logp[j]).item()))
    ev = {v: int(rows[j, bn.nodes.index(v)]) for v in ev_vars}
    keep = torch.ones(len(rows), dtype=torch.bool)
    for v, x in ev.items():
        keep &= rows[:, bn.nodes.index(v)] == x
    return bn, rows, logp, ev, keep


@settings(max_examples=24, deadline=None)
@given(_hypothesis_bn(), st.data())
def test_posterior_and_log_evidence_match_brute_force(spec, data):
    with in_space(spec[3][1]):
        bn, rows, logp, ev, keep = _brute_case(spec, data)
        torch.testing.assert_close(bn.log_evidence(ev), logp[keep].logsumexp(0))
        post = bn.posterior(None, ev)
        for q in post:
            torch.testing.assert_close(post[q], brute_posterior(bn, rows, logp, ev, q))
        hidden = [v for v in bn.nodes if v not in ev]
        if len(hidden) >= 2:
            joint = bn.posterior(hidden[:2], ev, joint=True)
            c0, c1 = (rows[:, bn.nodes.index(v)] for v in hidden[:2])
            w = torch.where(keep, logp, torch.tensor(-math.inf, dtype=logp.dtype))
            ref = torch.stack([torch.stack([w[(c0 == a) & (c1 == b)].logsumexp(0)
                                            for b in range(bn.cardinality(hidden[1]))])
                               for a in range(bn.cardinality(hidden[0]))])
            torch.testing.assert_close(joint, (ref - ref.logsumexp((0, 1))).exp())


@settings(max_examples=24, deadline=None)
@given(_hypothesis_bn(), st.data())
def test_map_matches_brute_force(spec, data):
    with in_space(spec[3][1]):
        bn, rows, logp, ev, keep = _brute_case(spec, data)
        best = torch.where(keep, logp, torch.tensor(-math.inf, dtype=logp.dtype)).max()
        assignment, value = bn.map(ev, return_log_prob=True)
        torch.testing.assert_close(value, best)
        # the returned assignment attains the maximum (ties between assignments are allowed)
        full = torch.tensor([[int(assignment[v]) for v in bn.nodes]])
        assert torch.isclose(bn.log_prob({v: full[:, i] for i, v in enumerate(bn.nodes)})[0], best)
        for v, x in ev.items():
            assert int(assignment[v]) == x


def test_batched_rows_equal_single_rows_and_partial_evidence():
    bn = random_bn(3, 6)
    torch.manual_seed(0)
    s = bn.sample(7)
    ev = {"x5": s["x5"].double(), "x2": s["x2"].double()}
    ev["x2"][[1, 4]] = float("nan")  # not observed in rows 1 and 4
    post = bn.posterior(["x0", "x1", "x2"], ev)
    logz = bn.log_evidence(ev)
    assert logz.shape == (7,) and post["x0"].shape == (7, bn.cardinality("x0"))
    for i in range(7):
        row = {k: int(t[i]) for k, t in ev.items() if not torch.isnan(t[i])}
        single = bn.posterior(["x0", "x1"] + ([] if "x2" in row else ["x2"]), row)
        for q in single:
            torch.testing.assert_close(post[q][i], single[q])
        torch.testing.assert_close(logz[i], bn.log_evidence(row))
    # where x2 is observed its posterior is a point mass
    assert torch.allclose(post["x2"][0], torch.nn.functional.one_hot(s["x2"][0], bn.cardinality("x2")).double())


def test_underflow_in_probability_space_falls_back_to_log_space():
    bn = BayesNet()
    for i in range(40):
        bn.add(f"r{i}", cpd.Table(torch.tensor([1e-10, 1 - 1e-10], dtype=torch.float64)))
    bn.add("c", cpd.Table(torch.tensor([[0.3, 0.7], [0.9, 0.1]], dtype=torch.float64), ["r0"]))
    ev = {f"r{i}": torch.tensor([0, 0]) for i in range(40)}  # p(e) = 1e-400 underflows float64
    torch.testing.assert_close(bn.log_evidence(ev), torch.full((2,), 40 * math.log(1e-10), dtype=torch.float64))
    torch.testing.assert_close(bn.posterior("c", ev), torch.tensor([[0.3, 0.7]] * 2, dtype=torch.float64))
    joint = bn.posterior(["c"], ev, joint=True)
    torch.testing.assert_close(joint, torch.tensor([[0.3, 0.7]] * 2, dtype=torch.float64))


def test_map_batched_and_state_names():
    bn = sprinkler()
    out = bn.map({"wet": torch.tensor([0, 1, 1])})
    for i, w in enumerate([0, 1, 1]):
        single = bn.map({"wet": w})
        assert all(int(out[v][i]) == int(single[v]) for v in bn.nodes)
    torch.testing.assert_close(bn.posterior("rain", {"rain": torch.tensor([float("nan")])})[0],
                               torch.tensor([0.8, 0.2]))
    assert torch.equal(bn.posterior("wet", {"rain": "yes"}), bn.posterior("wet", {"rain": 1}))


def test_plan_is_cached_per_evidence_pattern(monkeypatch):
    from hybridpgm.infer import bn_dense

    monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)  # contract even this small network
    bn = random_bn(5, 6)
    bn.posterior("x0", {"x3": torch.tensor([0, 1])})
    misses = bn.plan_cache.misses
    bn.posterior("x0", {"x3": torch.tensor([1, 1, 0])})  # same pattern, other values and rows
    assert bn.plan_cache.misses == misses and bn.plan_cache.hits >= 1
    bn.posterior("x0", {"x4": torch.tensor([1, 0])})  # new pattern
    assert bn.plan_cache.misses == misses + 1


def test_log_evidence_is_differentiable():
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.9, 0.1], [0.4, 0.6]], ["a"]))
    lz = bn.log_evidence({"b": torch.tensor([1, 1, 0])}).sum()
    lz.backward()
    assert all(torch.isfinite(c.logits.grad).all() and c.logits.grad.abs().sum() > 0 for c in bn.cpds.values())


def test_mixed_network_with_observed_linear_gaussian_matches_bayes_rule():
    bn = BayesNet()
    bn.add("z", cpd.Table([0.3, 0.7]))
    bn.add("u", cpd.LinearGaussian(0.5, scale=2.0))
    bn.add("x", cpd.LinearGaussian(torch.tensor([-1.0, 2.0]), torch.tensor([[1.5], [0.5]]),
                                   torch.tensor([1.0, 0.5]), ["z", "u"]))
    u, x = torch.tensor([0.2, -1.0]), torch.tensor([1.0, 0.3])
    post = bn.posterior("z", {"u": u, "x": x})
    normal = torch.distributions.Normal
    lik = torch.stack([normal(-1.0 + 1.5 * u, 1.0).log_prob(x), normal(2.0 + 0.5 * u, 0.5).log_prob(x)], -1)
    ref = (lik + torch.tensor([0.3, 0.7]).log()).softmax(-1)
    torch.testing.assert_close(post, ref)
    le = bn.log_evidence({"u": u, "x": x})
    torch.testing.assert_close(le, (lik + torch.tensor([0.3, 0.7]).log()).logsumexp(-1)
                               + normal(0.5, 2.0).log_prob(u))


@pytest.mark.parametrize("call", ["posterior", "log_evidence", "map"])
def test_bad_evidence_raises_naming_it(call):
    bn = sprinkler()
    fn = getattr(bn, call)
    args = (lambda ev: fn("rain", ev)) if call == "posterior" else fn
    with pytest.raises(EvidenceError, match="'cloudy'"):
        args({"cloudy": 1})
    with pytest.raises(EvidenceError, match="'wet'"):
        args({"wet": 2})
    with pytest.raises(EvidenceError, match="'maybe'"):
        args({"wet": "maybe"})
    impossible = {"rain": 0, "sprinkler": 0, "wet": 1}
    if call == "log_evidence":
        assert torch.isneginf(fn(impossible))
    else:
        with pytest.raises(EvidenceError, match="probability zero"):
            fn(None, impossible) if call == "posterior" else fn(impossible)


def test_bad_query_raises():
    bn = sprinkler()
    with pytest.raises(EvidenceError, match="'snow'"):
        bn.posterior("snow", {"wet": 1})
    with pytest.raises(EvidenceError, match="'wet'.*observed"):
        bn.posterior("wet", {"wet": 1})
    with pytest.raises(EvidenceError, match="differ in length"):
        bn.posterior("rain", {"wet": torch.tensor([0, 1]), "sprinkler": torch.tensor([0, 1, 1])})


def test_zero_probability_row_is_named():
    bn = sprinkler()
    ev = {"rain": torch.tensor([0, 0, 1]), "sprinkler": torch.tensor([0, 0, 0]), "wet": torch.tensor([0, 1, 1])}
    with pytest.raises(EvidenceError, match=r"probability zero .* row\(s\) \[1\]"):
        bn.posterior(None, ev)
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1\]"):
        bn.map(ev)
    le = bn.log_evidence(ev)  # log p(e) = -inf is the right answer, not an error, and never NaN
    assert torch.isneginf(le[1]) and torch.isfinite(le[[0, 2]]).all()


def test_brute_force_smallsprinkler():
    bn = sprinkler()
    rows, logp = brute_joint(bn)
    for w, s in itertools.product(range(2), range(2)):
        ev = {"wet": w, "sprinkler": s}
        torch.testing.assert_close(bn.posterior("rain", ev).float(),
                                   brute_posterior(bn, rows, logp, ev, "rain").float())


# -- mixed evidence patterns in one batch, and soft (virtual) evidence ---------------------------
@pytest.mark.parametrize("name", ["asia", "cancer", "survey", "sachs"])
def test_mixed_evidence_batch_matches_pgmpy(name):
    """Every row observes a different subset of nodes; one call answers them all."""
    from pgmpy.inference import VariableElimination

    bn = read_bif(bundled_bif(name))
    ve = VariableElimination(bn.to_pgmpy())
    g = torch.Generator().manual_seed(3)
    rows = 6
    ev_nodes = [bn.nodes[i] for i in torch.randperm(len(bn.nodes), generator=g)[: max(2, len(bn.nodes) // 3)]]
    torch.manual_seed(4)
    sample = bn.sample(rows)
    observed = torch.rand(rows, len(ev_nodes), generator=g) < 0.5
    observed[0] = False  # a row with no evidence at all
    observed[1] = True   # a row with all of it
    evidence = {v: torch.where(observed[:, j], sample[v], torch.full_like(sample[v], -1))
                for j, v in enumerate(ev_nodes)}
    assert len({tuple(r) for r in observed.tolist()}) >= 3
    with torch.no_grad():
        post = bn.posterior(None, evidence)
        log_z = bn.log_evidence(evidence)
    assert set(post) == set(bn.nodes)
    for i in range(rows):
        row = {v: evidence[v][i] for v in ev_nodes if evidence[v][i] >= 0}
        for v in bn.nodes:
            if v in row:
                assert torch.allclose(post[v][i], torch.nn.functional.one_hot(row[v], bn.cardinality(v)).double(),
                                      atol=1e-12)
                continue
            assert torch.allclose(post[v][i], pgmpy_marginal(ve, bn, row, v), atol=1e-6)
        if row:
            ref = ve.query(list(row), joint=True, show_progress=False)
            p = ref.get_value(**{v: bn.state_names[v][int(x)] for v, x in row.items()})
            assert math.isclose(float(log_z[i]), math.log(p), abs_tol=1e-6)
        else:
            assert abs(float(log_z[i])) < 1e-12


@pytest.mark.parametrize("name", ["asia", "sachs"])
def test_rows_split_by_inner_evidence_pattern_equal_one_indicator_contraction(name, monkeypatch):
    """Evidence on nodes with children, observed in some rows: grouping rows by pattern (a few indexed
    contractions) and one contraction with per-row indicators give the same marginals and log p(e)."""
    from hybridpgm.infer import exact, row_groups

    bn = read_bif(bundled_bif(name))
    inner = [v for v in bn.nodes if bn.child_nodes(v)][:3]
    torch.manual_seed(5)
    sample = bn.sample(12)
    g = torch.Generator().manual_seed(6)
    evidence = {v: torch.where(torch.rand(12, generator=g) < 0.5, sample[v], torch.full_like(sample[v], -1))
                for v in inner}
    ev = exact.parse_evidence(bn, evidence)
    groups = exact.row_groups(bn, ev, set(bn.nodes))
    assert groups is not None and len(groups) > 1
    assert sorted(torch.cat([idx for idx, _ in groups]).tolist()) == list(range(12))
    with torch.no_grad():
        # split on every inner evidence node whatever the cost
        monkeypatch.setattr(exact, "choose_split", lambda bn, ev, targets, queries=(): row_groups.inner_nodes(
            bn, ev, targets))
        split = bn.posterior(None, evidence), bn.log_evidence(evidence)
        monkeypatch.setattr(exact, "choose_split", lambda *args: [])  # one contraction with indicators
        joint = bn.posterior(None, evidence), bn.log_evidence(evidence)
    for v in bn.nodes:
        assert torch.allclose(split[0][v], joint[0][v], atol=1e-12)
    assert torch.allclose(split[1], joint[1], atol=1e-12)


def test_split_rows_equal_row_by_row_queries_and_name_impossible_rows(monkeypatch):
    from hybridpgm.infer import exact as exact_module
    from hybridpgm.infer import row_groups

    monkeypatch.setattr(exact_module, "choose_split",  # split on every inner evidence node whatever the cost
                        lambda bn, ev, targets, queries=(): row_groups.inner_nodes(bn, ev, targets))
    bn = sprinkler()
    bn_inner = "sprinkler"  # has a child (wet)
    ev = {bn_inner: torch.tensor([0, -1, 1, -1]), "wet": torch.tensor([1, 1, 0, 0])}
    assert exact_module.row_groups(bn, exact_module.parse_evidence(bn, ev), set(bn.nodes)) is not None
    post = bn.posterior("rain", ev)
    for i in range(4):
        row = {k: t[i:i + 1] for k, t in ev.items() if int(t[i]) >= 0}
        assert torch.allclose(post[i], bn.posterior("rain", row)[0], atol=1e-6)
    # wet=1 is impossible given rain=no, sprinkler=no in the table: a zero-probability row is named globally
    bad = {"rain": torch.tensor([0, 0, 0]), "sprinkler": torch.tensor([1, 0, -1]), "wet": torch.tensor([1, 1, 1])}
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1\]"):
        bn.posterior(None, bad)


def test_evidence_of_no_rows_gives_empty_answers():
    """An empty batch (the last of a data loader, say) answers every query with zero rows of the usual shapes
    (before, each query failed inside a reshape)."""
    bn = sprinkler().double()
    ev = {"wet": torch.tensor([], dtype=torch.long), "rain": torch.tensor([], dtype=torch.long)}
    post = bn.posterior(None, ev)
    assert list(post) == ["sprinkler"] and post["sprinkler"].shape == (0, 2)
    assert post["sprinkler"].dtype == torch.float64
    assert bn.posterior("sprinkler", ev).shape == (0, 2)
    assert bn.posterior(["sprinkler"], ev, joint=True).shape == (0, 2)
    assert bn.log_evidence(ev).shape == (0,)
    best, log_p = bn.map(ev, return_log_prob=True)
    assert {v: (x.shape, x.dtype) for v, x in best.items()} == {v: ((0,), torch.long) for v in bn.nodes}
    assert log_p.shape == (0,)
    samples, log_p = posterior_sample(bn, 4, ev, return_log_prob=True)
    assert all(x.shape == (4, 0) for x in samples.values()) and log_p.shape == (4, 0)


# -- MAP back-tracking by autograd, under no_grad and inference_mode ---------------------------------------
def test_map_under_inference_mode_equals_map_outside():
    """BayesNet.map back-tracks the max-sum contraction by a gradient: under torch.inference_mode() it raised
    'element 0 of tensors does not require grad'; evidence made in inference mode and used outside it raised
    'Inference tensors cannot be saved for backward'."""
    bn = random_bn(5, 5)
    ev = {"x4": torch.tensor([0, 1, 1]), "x1": torch.tensor([1, 0, 1])}
    want, want_lp = bn.map(ev, return_log_prob=True)
    with torch.no_grad():
        ng = bn.map(ev)
    with torch.inference_mode():
        inner_ev = {k: v.clone() for k, v in ev.items()}  # inference tensors
        got, got_lp = bn.map(inner_ev, return_log_prob=True)
    outside = bn.map(inner_ev)
    for res in (ng, got, outside):
        assert list(res) == list(want) and all(torch.equal(res[v], want[v]) for v in want)
    torch.testing.assert_close(got_lp, want_lp)
    # the MAP state is the argmax of the brute-force joint over the hidden nodes
    rows, logp = brute_joint(bn)
    nodes = bn.nodes
    for r in range(3):
        match = (rows[:, nodes.index("x4")] == ev["x4"][r]) & (rows[:, nodes.index("x1")] == ev["x1"][r])
        best = rows[match][logp[match].argmax()]
        assert [int(want[v][r]) for v in nodes] == best.tolist()


@pytest.mark.parametrize("query", [3, [0], ["rain", 1], 2.5])
def test_a_query_that_is_not_node_names_is_named(query):
    """Before, a number raised Python's TypeError ('int' object is not iterable)."""
    with pytest.raises(EvidenceError, match="query must be a node name, a list of node names or None"):
        sprinkler().posterior(query, {"wet": 1})


@pytest.mark.parametrize("name", ["alarm", "water"])
def test_posterior_under_inference_mode_equals_posterior_outside(name):
    """Found by an audit: marginals are gradients of the contraction, and under torch.inference_mode() they raised
    'element 0 of tensors does not require grad' (alarm through autograd, water's by-hand reverse pass where a
    group has no large intermediate); compile_evidence, built on them, too."""
    from hybridpgm.graphs import load_network

    bn = load_network(name)
    node = bn.nodes[-1]
    ev = {bn.nodes[0]: torch.tensor([0, 1, -1])}
    want = bn.posterior(None, ev)
    with torch.inference_mode():
        got = bn.posterior(None, {k: v.clone() for k, v in ev.items()})
        table = bn.compile_evidence([bn.nodes[0]]) if name == "alarm" else None
    assert list(got) == list(want)
    for v in want:
        torch.testing.assert_close(got[v], want[v], rtol=0, atol=1e-12)
    if table is not None:
        torch.testing.assert_close(table.posterior(node, ev), want[node], rtol=0, atol=1e-12)
