"""Marginals by differentiation: read off the CPD factors or off per-row indicators, the same numbers."""

import math

import pytest
import torch

from hybridpgm.graphs import cpd, read_bif
from hybridpgm.infer import bn_contract
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
    w = torch.linspace(0.5, 2.0, 3, dtype=dtype)[:, None]
    g_direct = torch.autograd.grad(sum((w * m).sum() for m in direct), list(bn.parameters()), allow_unused=True)
    g_ind = torch.autograd.grad(sum((w * m).sum() for m in indicators), list(bn.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in g_direct)
    for a, b in zip(g_direct, g_ind):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() < 1e-6
            continue
        torch.testing.assert_close(a, b)


def test_underflow_goes_to_log_space_on_the_family_path():
    from hybridpgm.graphs import BayesNet

    bn = BayesNet()
    for i in range(40):
        bn.add(f"r{i}", cpd.Table(torch.tensor([1e-10, 1 - 1e-10], dtype=torch.float64)))
    bn.add("c", cpd.Table(torch.tensor([[0.3, 0.7], [0.9, 0.1]], dtype=torch.float64), ["r0"]))
    ev = {f"r{i}": torch.tensor([0, 0]) for i in range(1, 40)}  # p(e) = 1e-390: probability space underflows
    ev["r0"] = torch.tensor([0, -1])
    post = bn.posterior(["c", "r0"], ev)
    torch.testing.assert_close(post["c"][0], torch.tensor([0.3, 0.7], dtype=torch.float64))
    c0 = 1e-10 * 0.3 + (1 - 1e-10) * 0.9  # row 1: r0 free, so p(c) = sum_r p(r) p(c | r)
    torch.testing.assert_close(post["c"][1], torch.tensor([c0, 1 - c0], dtype=torch.float64))
    torch.testing.assert_close(post["r0"][1], torch.tensor([1e-10, 1 - 1e-10], dtype=torch.float64))



def _space_spy(monkeypatch, rows: bool = False) -> list:
    """Record the space ("prob" or "log") of every factor set the exact queries build (with ``rows``: the pair
    ``(space, rows of the query)``)."""
    spaces = []
    real = bn_contract.factors

    def spy(facts, ev, keep, space):
        spaces.append((space, ev.n) if rows else space)
        return real(facts, ev, keep, space)

    monkeypatch.setattr(bn_contract, "factors", spy)
    return spaces


def test_float32_queries_are_contracted_in_probability_space(monkeypatch):
    """A float32 mixed batch of alarm takes probability space only, with float64's answers to float32 rounding."""
    nets = {dt: read_bif(bundled_bif("alarm"), dtype=dt) for dt in (torch.float64, torch.float32)}
    torch.manual_seed(3)
    s = nets[torch.float64].sample(9)
    g = torch.Generator().manual_seed(4)
    nodes = ["HR", "CVP", "PCWP", "HREKG", "INTUBATION", "VENTLUNG", "SAO2"]
    evidence = {v: torch.where(torch.rand(9, generator=g) < 0.6, s[v], torch.full_like(s[v], -1)) for v in nodes}
    spaces = _space_spy(monkeypatch)
    with torch.no_grad():
        got = {dt: (bn.posterior(None, evidence), bn.posterior(["LVFAILURE", "HYPOVOLEMIA"], evidence, joint=True),
                    bn.log_evidence(evidence)) for dt, bn in nets.items()}
    assert spaces and set(spaces) == {"prob"}
    (post32, joint32, logz32), (post64, joint64, logz64) = got[torch.float32], got[torch.float64]
    for v in post64:
        assert post32[v].dtype == torch.float32
        torch.testing.assert_close(post32[v].double(), post64[v], atol=2e-6, rtol=0)
    torch.testing.assert_close(joint32.double(), joint64, atol=2e-6, rtol=0)
    # each of alarm's 37 tables is rounded to float32 (6e-8 relative), and log p(e) adds up those errors
    torch.testing.assert_close(logz32.double(), logz64, atol=37 * 6e-8, rtol=0)


def _roots_net(dtype, q: float):
    """``r0 ~ [0.5, 0.5]``, ``r1..r4 ~ [q, 1 - q]``, ``c | r0``: evidence ``r1..r4 = 0`` has probability q^4,
    all of it in the observed nodes' own table entries."""
    from hybridpgm.graphs import BayesNet

    bn = BayesNet()
    bn.add("r0", cpd.Table(torch.tensor([0.5, 0.5], dtype=dtype)))
    for i in range(1, 5):
        bn.add(f"r{i}", cpd.Table(torch.tensor([q, 1 - q], dtype=dtype)))
    bn.add("c", cpd.Table(torch.tensor([[0.3, 0.7], [0.9, 0.1]], dtype=dtype), ["r0"]))
    return bn


@pytest.mark.parametrize("q", [1e-5, 1e-10])  # p(e) about 1e-20 (a normal float32) and 1e-40 (a subnormal one)
def test_unlikely_observations_stay_in_probability_space_scaled_by_row(q, monkeypatch):
    """Row-scaled factors (:func:`row_scaled`) lift evidence that is unlikely through its own table entries far
    above the floor: float32 answers it in probability space, with float64's marginals and log p(e)."""
    ev = {f"r{i}": torch.tensor([0, 0]) for i in range(1, 5)}  # p(e) = q^4 (row 1) and q^4 / 2 (row 0)
    ev["r0"] = torch.tensor([0, -1])
    bn32, bn64 = _roots_net(torch.float32, q), _roots_net(torch.float64, q)
    spaces = _space_spy(monkeypatch)
    post, log_z = bn32.posterior(["c", "r0"], ev), bn32.log_evidence(ev)
    assert spaces == ["prob", "prob"]
    ref, ref_z = bn64.posterior(["c", "r0"], ev), bn64.log_evidence(ev)
    for v in ("c", "r0"):
        torch.testing.assert_close(post[v].double(), ref[v], atol=1e-6, rtol=0)
    torch.testing.assert_close(log_z.double(), ref_z, atol=0, rtol=1e-6)
    torch.testing.assert_close(ref_z, torch.tensor([4 * math.log(q) + math.log(0.5), 4 * math.log(q)],
                                                   dtype=torch.float64), atol=1e-4 * q, rtol=1e-12)


def test_row_scaling_divides_the_factors_that_can_be_small_and_keeps_their_logs():
    """Tables indexed by their own observed variable and soft likelihoods come out with a largest entry of one
    in every row, their maxima summed in log C; tables that keep their own variable (largest entry at least
    1/|v|) and hard-evidence indicators (exactly one) are left as they are; float64 is not scaled."""
    from hybridpgm.infer.bn_factors import factors
    from hybridpgm.infer.exact import Likelihood

    bn = read_bif(bundled_bif("alarm"), dtype=torch.float32)
    s = bn.sample(5)
    evidence = {"HR": s["HR"], "CVP": s["CVP"], "HRBP": torch.tensor([0, -1, 1, -1, 2]),
                "SAO2": Likelihood(torch.rand(5, 3, generator=torch.Generator().manual_seed(0)) + 0.1)}
    ev = parse_evidence(bn, evidence)
    facts = network_facts(bn)
    keep = relevant(facts, set(bn.nodes))
    tensors, dims = factors(facts, ev, keep, "prob")
    owners = bn_contract.factor_owners(facts, ev, keep)
    scaled, log_c = bn_contract.row_scaled(tensors, dims, ev, owners)
    expect = torch.zeros(5, dtype=torch.float64)
    kinds = set()
    for t, u, d, v in zip(tensors, scaled, dims, owners):
        small = d[0] == bn_contract.BATCH and (v not in d or v in ev.soft) if d else False
        if small:
            kinds.add("soft" if v in ev.soft else "indexed")
            torch.testing.assert_close(u.reshape(5, -1).amax(-1), torch.ones(5))
            torch.testing.assert_close(u * t.reshape(5, -1).amax(-1).reshape(-1, *[1] * (t.dim() - 1)), t)
            expect += t.double().reshape(5, -1).amax(-1).log()
        else:
            kinds.add("kept row factor" if d and d[0] == bn_contract.BATCH else "kept")
            assert u is t
    assert kinds == {"soft", "indexed", "kept row factor", "kept"}
    torch.testing.assert_close(log_c.double(), expect, atol=1e-5, rtol=0)
    bn64 = read_bif(bundled_bif("alarm"))
    ev64 = parse_evidence(bn64, evidence | {"SAO2": Likelihood(evidence["SAO2"].values.double())})
    t64, d64 = factors(network_facts(bn64), ev64, keep, "prob")
    out64, c64 = bn_contract.row_scaled(t64, d64, ev64, bn_contract.factor_owners(network_facts(bn64), ev64, keep))
    assert c64 == 0.0 and all(a is b for a, b in zip(out64, t64))


def _conflict_net(dtype, q: float):
    """``r0 ~ [0.5, 0.5]``, ``c | r0``, and four pairs ``a_i, b_i`` of children of ``p_i ~ [0.5, 0.5]`` that
    copy it with error ``q``: ``a_i = 0, b_i = 1`` (conflicting) has probability ``q (1 - q)`` for each pair
    although every table entry the evidence picks is 1 - q at best, so scaling cannot lift it."""
    from hybridpgm.graphs import BayesNet

    bn = BayesNet()
    bn.add("r0", cpd.Table(torch.tensor([0.5, 0.5], dtype=dtype)))
    bn.add("c", cpd.Table(torch.tensor([[0.3, 0.7], [0.9, 0.1]], dtype=dtype), ["r0"]))
    copy = torch.tensor([[1 - q, q], [q, 1 - q]], dtype=dtype)
    for i in range(1, 5):
        bn.add(f"p{i}", cpd.Table(torch.tensor([0.5, 0.5], dtype=dtype)))
        bn.add(f"a{i}", cpd.Table(copy.clone(), [f"p{i}"]))
        bn.add(f"b{i}", cpd.Table(copy.clone(), [f"p{i}"]))
    return bn


def _pairs(conflicts: list) -> dict:
    """Evidence on every pair: row ``n`` conflicts in its first ``conflicts[n]`` pairs, agrees in the others."""
    ev = {f"a{i}": torch.zeros(len(conflicts), dtype=torch.long) for i in range(1, 5)}
    ev.update({f"b{i}": torch.tensor([int(i <= k) for k in conflicts]) for i in range(1, 5)})
    return ev


@pytest.mark.parametrize("q", [1e-5, 1e-10])  # p(e) about 1e-20 (a normal float32) and 1e-40 (a subnormal one)
def test_float32_rows_below_the_floor_go_to_log_space(q, monkeypatch):
    """Float32 evidence of probability under :data:`PROBABILITY_FLOOR` (1e-15) even after row scaling sends
    the query to log space, whose answers equal float64's; a subnormal probability-space result would have
    lost its digits."""
    ev = _pairs([4, 4])
    ev["r0"] = torch.tensor([0, -1])
    bn32, bn64 = _conflict_net(torch.float32, q), _conflict_net(torch.float64, q)
    spaces = _space_spy(monkeypatch)
    post = bn32.posterior(["c", "r0", "p1"], ev)
    assert spaces == ["prob", "log"]
    spaces.clear()
    log_z = bn32.log_evidence(ev)
    assert spaces == ["prob", "log"]
    ref, ref_z = bn64.posterior(["c", "r0", "p1"], ev), bn64.log_evidence(ev)  # float64: probability space
    for v in ("c", "r0", "p1"):  # log space in float32 rounds log p to 6e-8 of |log p(e)| (46 and 92): 3e-6, 6e-6
        torch.testing.assert_close(post[v].double(), ref[v], atol=1e-5, rtol=0)
    torch.testing.assert_close(log_z.double(), ref_z, atol=0, rtol=1e-6)
    torch.testing.assert_close(ref["c"], torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64))


def test_only_the_rows_below_the_floor_are_redone_in_log_space(monkeypatch):
    """Rows 0 and 3 (p(e) about 1e-20 after scaling) are answered again, alone, in log space; rows 1 and 2 keep
    their probability-space answers; marginals, the joint and log p(e) all equal float64's."""
    ev = _pairs([4, 0, 1, 4])
    ev["r0"] = torch.tensor([0, -1, 1, -1])
    bn32, bn64 = _conflict_net(torch.float32, 1e-5), _conflict_net(torch.float64, 1e-5)
    calls = _space_spy(monkeypatch, rows=True)
    got = {}
    for what, query in {"marginals": lambda bn: bn.posterior(["c", "r0", "p1"], ev),
                        "joint": lambda bn: bn.posterior(["c", "p1"], ev, joint=True),
                        "log_evidence": lambda bn: bn.log_evidence(ev)}.items():
        calls.clear()
        got[what] = query(bn32)
        assert calls == [("prob", 4), ("log", 2)], what
        ref = query(bn64)
        for a, b in ([(got[what][v], ref[v]) for v in ref] if isinstance(ref, dict) else [(got[what], ref)]):
            assert a.dtype == torch.float32 and torch.isfinite(a).all()
            if what == "log_evidence":  # rounding of 1 - 1e-5 in float32 (6e-8) in each of 8 factors
                torch.testing.assert_close(a.double(), b, atol=1e-6, rtol=1e-6)
            else:  # rows 0 and 3 in float32 log space: 6e-8 of |log p(e)| = 46
                torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=0)
    torch.testing.assert_close(got["marginals"]["c"][2].double(), torch.tensor([0.9, 0.1], dtype=torch.float64))


def test_rows_redone_in_log_space_stay_differentiable_and_name_their_rows():
    """Gradients of log p(e) through a batch with a row redone in log space equal float64's; evidence of
    probability zero in a redone row raises naming its row in the caller's batch."""
    from hybridpgm.errors import EvidenceError

    ev = _pairs([0, 4, 1])  # row 1: p(e) = 1e-20, redone
    ev["r0"] = torch.tensor([0, -1, 1])
    grads = {}
    for dt in (torch.float32, torch.float64):
        bn = _conflict_net(dt, 1e-5)
        for c in bn.cpds.values():
            c.logits = torch.nn.Parameter(c.logits.detach().clone())
        w = torch.tensor([1.0, 2.0, 3.0], dtype=dt)
        params = [c.logits for v, c in bn.cpds.items() if v != "c"]  # c is barren: not in log p(e)
        grads[dt] = torch.autograd.grad((w * bn.log_evidence(ev)).sum(), params)
    for a, b in zip(grads[torch.float32], grads[torch.float64]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)
    bn = _conflict_net(torch.float32, 0.0)  # a conflict is impossible: rows 1 and 2, redone alone
    with pytest.raises(EvidenceError, match=r"row\(s\) \[1, 2\]"):
        bn.posterior("c", ev)


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

    monkeypatch.setattr(bn_contract, "plan_for", lambda *args: Plan)
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
