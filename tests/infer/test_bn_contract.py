"""Marginals by differentiation: read off the CPD factors or off per-row indicators, the same numbers."""

import pytest
import torch

from hybridpgm.graphs import cpd, read_bif
from hybridpgm.infer.bn_contract import marginals
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import relevant
from tests.graphs.bn_helpers import bundled_bif, random_bn, single_thread  # noqa: F401 (autouse fixture)


def _both(bn, evidence, names):
    ev = parse_evidence(bn, evidence)
    names = [q for q in names if q not in ev.observed]
    keep = relevant(network_facts(bn), set(names) | set(ev.observed) | set(ev.partial))
    return marginals(bn, ev, names, keep), marginals(bn, ev, names, keep, direct=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # probability space, log space
@pytest.mark.parametrize("rows", [1, 5])
def test_family_marginals_equal_indicator_marginals(dtype, rows):
    bn = read_bif(bundled_bif("asia"), dtype=dtype)
    torch.manual_seed(0)
    s = bn.sample(rows)
    evidence = {"xray": s["xray"], "smoke": torch.where(torch.arange(rows) % 2 == 0, s["smoke"], -1)}
    names = [v for v in bn.nodes if v != "xray"]
    with torch.no_grad():
        direct, indicators = _both(bn, evidence, names)
    for a, b in zip(direct, indicators):
        assert a.shape == (rows, 2)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a.sum(-1), torch.ones(rows, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_family_marginals_are_differentiable_like_indicator_marginals(dtype):
    bn = random_bn(11, 5, dtype=dtype)
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    evidence = {"x4": torch.tensor([0, 1, 1]), "x2": torch.tensor([1, -1, 0])}
    names = ["x0", "x1", "x3"]
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
