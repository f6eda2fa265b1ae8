"""Marginals by differentiation: read off the CPD factors or off per-row indicators, the same numbers; rows
contracted in chunks under a memory budget; the hand-written reverse pass (:mod:`hybridpgm.infer.bn_contract`)."""

import pytest
import torch

from hybridpgm.graphs import read_bif
from hybridpgm.infer.bn_contract import marginals
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import relevant
from tests.graphs.bn_helpers import bundled_bif, in_space, random_bn, single_thread  # noqa: F401 (autouse fixture)


def _both(bn, evidence, names):
    ev = parse_evidence(bn, evidence)
    names = [q for q in names if q not in ev.observed]
    keep = relevant(network_facts(bn), set(names) | set(ev.observed) | set(ev.partial))
    return marginals(bn, ev, names, keep), marginals(bn, ev, names, keep, direct=False)


#: (dtype, probability space): float64 and float32 in probability space, and log space
SPACES = [(torch.float64, True), (torch.float32, True), (torch.float32, False)]


@pytest.mark.parametrize("dtype,prob", SPACES)
@pytest.mark.parametrize("rows", [1, 5])
def test_family_marginals_equal_indicator_marginals(dtype, prob, rows):
    bn = read_bif(bundled_bif("asia"), dtype=dtype)
    torch.manual_seed(0)
    s = bn.sample(rows)
    evidence = {"xray": s["xray"], "smoke": torch.where(torch.arange(rows) % 2 == 0, s["smoke"], -1)}
    names = [v for v in bn.nodes if v != "xray"]
    with torch.no_grad(), in_space(prob):
        direct, indicators = _both(bn, evidence, names)
    for a, b in zip(direct, indicators):
        assert a.shape == (rows, 2)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a.sum(-1), torch.ones(rows, dtype=dtype))


@pytest.mark.parametrize("dtype,prob", SPACES)
def test_family_marginals_are_differentiable_like_indicator_marginals(dtype, prob):
    bn = random_bn(11, 5, dtype=dtype)
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    evidence = {"x4": torch.tensor([0, 1, 1]), "x2": torch.tensor([1, -1, 0])}
    names = ["x0", "x1", "x3"]
    with in_space(prob):
        direct, indicators = _both(bn, evidence, names)
    # weights per row and state: a row's marginal sums to one, so weights per row alone have a zero gradient
    w = torch.linspace(0.5, 2.0, 3, dtype=dtype)[:, None] * torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    assert all(m.shape == w.shape for m in direct)
    g_direct = torch.autograd.grad(sum((w * m).sum() for m in direct), list(bn.parameters()), allow_unused=True)
    g_ind = torch.autograd.grad(sum((w * m).sum() for m in indicators), list(bn.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().max() > 1e-3 for g in g_direct)
    for a, b in zip(g_direct, g_ind):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() < 1e-6
            continue
        torch.testing.assert_close(a, b)


# -- rows contracted in chunks under a memory budget ------------------------------------------------------
def _chunk_spy(monkeypatch, budget: int) -> list:
    """Set the row budget and record the chunk sizes of every chunked contraction."""
    from hybridpgm.infer import bn_contract

    monkeypatch.setattr(bn_contract, "ROW_CHUNK_BYTES", {"cpu": budget})
    sizes = []
    real = bn_contract.in_row_chunks

    def spy(ev, chunk, fn, row_ids=None):
        sizes.append((ev.n, chunk))
        return real(ev, chunk, fn, row_ids)

    monkeypatch.setattr(bn_contract, "in_row_chunks", spy)
    monkeypatch.setattr("hybridpgm.infer.exact.in_row_chunks", spy)
    return sizes


@pytest.mark.parametrize("dtype,prob", SPACES)
def test_rows_in_chunks_give_the_one_contraction_answers(dtype, prob, monkeypatch):
    """Marginals, joint, log p(e) and MAP of a mixed-evidence batch are the same contracted whole or a
    row at a time (the smallest budget)."""
    bn = read_bif(bundled_bif("alarm"), dtype=dtype)
    torch.manual_seed(1)
    s = bn.sample(7)
    g = torch.Generator().manual_seed(2)
    nodes = ["HR", "CVP", "PCWP", "HREKG", "INTUBATION", "VENTLUNG"]  # leaves and inner nodes
    evidence = {v: torch.where(torch.rand(7, generator=g) < 0.6, s[v], torch.full_like(s[v], -1)) for v in nodes}

    def answers():
        with torch.no_grad(), in_space(prob):
            return (bn.posterior(None, evidence), bn.posterior(["LVFAILURE", "HYPOVOLEMIA"], evidence, joint=True),
                    bn.log_evidence(evidence), bn.map(evidence, return_log_prob=True))

    whole = answers()
    sizes = _chunk_spy(monkeypatch, 1)
    chunked = answers()
    assert sizes and all(chunk == 1 for _, chunk in sizes)
    tol = dict(atol=1e-12, rtol=0) if dtype == torch.float64 else dict(atol=1e-5, rtol=0)
    for v in whole[0]:
        torch.testing.assert_close(chunked[0][v], whole[0][v], **tol)
    torch.testing.assert_close(chunked[1], whole[1], **tol)
    torch.testing.assert_close(chunked[2], whole[2], **tol)
    assert all(torch.equal(chunked[3][0][v], whole[3][0][v]) for v in whole[3][0])
    torch.testing.assert_close(chunked[3][1], whole[3][1], **tol)


def test_rows_per_chunk_follows_the_budget_and_uneven_chunks_join_in_order(monkeypatch):
    from hybridpgm.infer import bn_contract

    bn = read_bif(bundled_bif("alarm"))
    ev = parse_evidence(bn, {"HR": torch.tensor([0, 1, 2, 0, 1, 2, 0])})

    class Plan:
        row_elements = 100

    monkeypatch.setattr(bn_contract, "plan_for", lambda *args, **kwargs: Plan)
    per_row = 3 * 8 * 100  # three float64 copies of each row element
    for budget, rows in [(per_row * 3 + 5, 3), (per_row - 1, 1), (per_row * 100, 7)]:
        monkeypatch.setattr(bn_contract, "ROW_CHUNK_BYTES", {"cpu": budget})
        assert bn_contract.rows_per_chunk(bn, ev, [], ()) == rows
    seen = []
    out = bn_contract.in_row_chunks(ev, 3, lambda sub, ids: seen.append(ids.tolist()) or sub.observed["HR"] * 10)
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]
    assert out.tolist() == [0, 10, 20, 0, 10, 20, 0]


def test_chunked_marginals_are_differentiable_like_whole_ones(monkeypatch):
    bn = random_bn(7, 14, max_card=3, max_parents=3)
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    torch.manual_seed(3)
    s = bn.sample(5)
    evidence = {"x13": s["x13"], "x6": torch.where(torch.arange(5) % 2 == 0, s["x6"], -1)}

    def grads():
        post = bn.posterior(["x0", "x3", "x9"], evidence)
        w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)[:, None]
        loss = sum((w * m).sum() for m in post.values()) + bn.log_evidence(evidence).sum()
        return torch.autograd.grad(loss, list(bn.parameters()), allow_unused=True)

    whole = grads()
    sizes = _chunk_spy(monkeypatch, 1)
    chunked = grads()
    assert sizes
    assert any(g is not None and g.abs().sum() > 0 for g in whole)
    for a, b in zip(chunked, whole):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_impossible_row_is_named_by_its_place_in_the_batch_across_chunks(monkeypatch):
    from hybridpgm.errors import EvidenceError

    bn = random_bn(8, 14, max_card=3, max_parents=3, zeros=True)
    v = next(v for v in bn.nodes if bn.parents(v) and (bn.cpds[v].probs == 0).any())
    parents = list(bn.parents(v))
    zero = (bn.cpds[v].probs == 0).nonzero()[0].tolist()  # a parent configuration and a state of v
    torch.manual_seed(4)
    s = bn.sample(7)
    evidence = {u: s[u].clone() for u in parents + [v]}
    for u, x in zip(parents + [v], zero):
        evidence[u][5] = x  # row 5 observes an event of probability zero
    sizes = _chunk_spy(monkeypatch, 1)
    with pytest.raises(EvidenceError, match=r"row\(s\) \[5\]"):
        bn.posterior(None, evidence)
    with pytest.raises(EvidenceError, match=r"row\(s\) \[5\]"):
        bn.map(evidence)
    assert sizes


def _spy_on_reverse_pass(monkeypatch) -> list:
    """Record each query that runs the hand-written reverse pass."""
    from hybridpgm.graphs import reverse_pass

    calls, real = [], reverse_pass.value_and_gradients

    def spy(plan, operands, wrt, workspace=None):
        calls.append(workspace)
        return real(plan, operands, wrt, workspace)

    monkeypatch.setattr(reverse_pass, "value_and_gradients", spy)
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("network", ["alarm", "insurance"])
def test_the_hand_written_reverse_pass_gives_autograds_marginals(network, dtype, monkeypatch):
    """With every contraction counted as large, posteriors of a mixed batch (split into row groups where the
    cost model says so) are autograd's, and the network keeps the workspace for the next query; float32
    (row-scaled probability space) as well as float64."""
    from hybridpgm.graphs import reverse_pass

    bn = read_bif(bundled_bif(network), dtype=dtype)
    torch.manual_seed(3)
    s = bn.sample(9)
    g = torch.Generator().manual_seed(4)
    nodes = list(bn.nodes)[::4]
    evidence = {v: torch.where(torch.rand(9, generator=g) < 0.5, s[v], torch.full_like(s[v], -1)) for v in nodes}
    with torch.no_grad():
        want = bn.posterior(None, evidence)
    calls = _spy_on_reverse_pass(monkeypatch)
    assert not calls  # small contractions: autograd
    monkeypatch.setattr(reverse_pass, "LARGE", 0)
    with torch.no_grad():
        got = bn.posterior(None, evidence)
        again = bn.posterior(None, evidence)
    assert calls and all(w is bn.plan_cache.workspace for w in calls)
    assert bn.plan_cache.workspace.nbytes > 0
    for v in want:  # float32: the same products, summed in another order
        torch.testing.assert_close(got[v], want[v], atol=1e-12 if dtype == torch.float64 else 1e-6, rtol=0)
        assert got[v].dtype == dtype and torch.equal(again[v], got[v])
    bn.plan_cache.clear()
    assert bn.plan_cache.workspace.nbytes == 0


def test_a_differentiable_posterior_never_takes_the_hand_written_pass(monkeypatch):
    from hybridpgm.graphs import reverse_pass

    monkeypatch.setattr(reverse_pass, "LARGE", 0)
    calls = _spy_on_reverse_pass(monkeypatch)
    bn = read_bif(bundled_bif("alarm"))
    evidence = {"HR": torch.tensor([0, 1, 2]), "CVP": torch.tensor([1, -1, 0])}
    with torch.no_grad():
        bn.posterior(None, evidence)
    assert calls
    calls.clear()
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    post = bn.posterior(None, evidence)
    assert not calls
    assert all(p.grad_fn is not None for p in post.values())


def test_a_network_with_a_workspace_copies_and_pickles(monkeypatch):
    import copy
    import pickle

    from hybridpgm.graphs import reverse_pass

    monkeypatch.setattr(reverse_pass, "LARGE", 0)
    bn = read_bif(bundled_bif("alarm"))
    evidence = {"HR": torch.tensor([0, 1, 2]), "CVP": torch.tensor([1, -1, 0])}
    with torch.no_grad():
        want = bn.posterior("LVFAILURE", evidence)
    assert bn.plan_cache.workspace.nbytes > 0
    for other in (copy.deepcopy(bn), pickle.loads(pickle.dumps(bn))):
        with torch.no_grad():
            torch.testing.assert_close(other.posterior("LVFAILURE", evidence), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("names", [["c"], ["c", "d"], ["d"]])
@pytest.mark.parametrize("chunked", [False, True])
def test_joint_posterior_names_the_impossible_rows(names, chunked, monkeypatch):
    """Rows 1 and 2 are impossible, rows 0 and 3 not: the error of the joint posterior names 1 and 2, whether the
    impossible rows are redone in log space or the rows are contracted in chunks (of one row: the first chunk with
    an impossible row raises, naming every impossible row of the whole batch)."""
    from hybridpgm.errors import EvidenceError
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import bn_contract

    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5, 0.0]))
    bn.add("b", cpd.Table([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], ["a"]))
    bn.add("c", cpd.Table([[0.3, 0.7, 0.0, 0, 0], [0.0, 0.0, 0.2, 0.4, 0.4]], ["b"]))
    bn.add("d", cpd.Table([[0.3, 0.7], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9], [1.0, 0.0]], ["c"]))
    if chunked:
        monkeypatch.setattr(bn_contract, "rows_per_chunk", lambda *args, **kwargs: 1)
    ev = {"a": torch.tensor([0, 0, 2, -1]), "b": torch.tensor([0, 1, -1, 1])}
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1, 2\];"):
        bn.posterior(names, ev, joint=True)
    joint = bn.posterior(names, {k: v[[0, 3]] for k, v in ev.items()}, joint=True)
    assert torch.allclose(joint.reshape(2, -1).sum(-1), torch.ones(2, dtype=joint.dtype))


def test_marginals_do_not_walk_the_networks_memos(monkeypatch):
    """``with_autograd`` walks its arguments for inference tensors; the network's facts (every CPD's tables, and
    memos that grow with the target sets seen) are bound to the query, not walked: the work per query does not
    grow with the memo.  Before: every call of ``marginals`` (one per row group) walked every entry (6% of
    asia's mixed batch, 1-2% on insurance and hailfinder)."""
    from hybridpgm import autograd_scope

    real, walked = autograd_scope._normal, [0]

    def counting(x):
        walked[0] += 1
        return real(x)

    monkeypatch.setattr(autograd_scope, "_normal", counting)
    bn = read_bif(bundled_bif("asia"))
    evidence = {"xray": torch.tensor([0, 1, 1]), "smoke": torch.tensor([1, -1, 0])}

    def walks():
        ev = parse_evidence(bn, evidence)
        names = [v for v in bn.nodes if v not in ev.observed]
        keep = relevant(network_facts(bn), set(names) | set(ev.observed) | set(ev.partial))
        walked[0] = 0
        with torch.no_grad():
            got = marginals(bn, ev, names, keep, direct=False)  # the contraction, not asia's dense joint
        return walked[0], got

    before, want = walks()
    memo = network_facts(bn).relevant
    for i in range(500):  # as a split search leaves it: many evidence structures' relevant sets
        memo[frozenset({f"structure {i}"})] = frozenset(bn.nodes)
    after, got = walks()
    assert 0 < after == before, (before, after)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    with torch.inference_mode():  # the evidence's inference tensors are still made normal for autograd
        inference = walks()[1]
    for a, b in zip(inference, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
