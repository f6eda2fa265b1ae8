"""Probability space or log space (:mod:`hybridpgm.infer.bn_spaces`): float32 queries in probability space, rows
scaled by their largest factor entries, rows below the floor answered again in log space, underflow caught."""

import math

import pytest
import torch

from hybridpgm.graphs import cpd, read_bif
from hybridpgm.infer import bn_contract
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import relevant
from tests.graphs.bn_helpers import bundled_bif, single_thread  # noqa: F401 (autouse fixture)


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
