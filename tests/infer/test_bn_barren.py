"""Barren query nodes answered forward from their tables: the same marginals (and gradients) as the contraction,
brute force's when no contraction is left, and impossible evidence still named."""

from unittest import mock

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd, read_bif
from hybridpgm.infer import exact as exact_module
from hybridpgm.infer.bn_barren import forward_nodes
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from tests.graphs.bn_helpers import brute_joint, brute_posterior, bundled_bif
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _contraction_only():
    """Every query node answered by the contraction (forward propagation off)."""
    return mock.patch.object(exact_module, "forward_nodes", lambda *args: [])


def _mixed_evidence(bn, nodes, rows: int, seed: int) -> dict:
    torch.manual_seed(seed)
    sample = bn.sample(rows)
    g = torch.Generator().manual_seed(seed)
    return {v: torch.where(torch.rand(rows, generator=g) < 0.6, sample[v], torch.full_like(sample[v], -1))
            for v in nodes}


@pytest.mark.parametrize("name,evidence_nodes", [("asia", ["smoke"]), ("alarm", ["HR", "BP", "PAP"]),
                                                 ("child", ["Disease", "LVHreport"])])
def test_forward_marginals_equal_the_contractions(name, evidence_nodes):
    bn = read_bif(bundled_bif(name)).double()
    ev = _mixed_evidence(bn, evidence_nodes, 6, seed=1)
    facts = network_facts(bn)
    parsed = parse_evidence(bn, ev)
    names = exact_module.posterior_names(facts, None, parsed.observed)
    forward = forward_nodes(facts, parsed, names, bn.topological_order, exact_module._targets(facts, parsed))
    assert len(forward) >= 2
    with torch.no_grad():
        got = bn.posterior(None, ev)
        with _contraction_only():
            want = bn.posterior(None, ev)
    for v in names:
        assert torch.allclose(got[v], want[v], atol=1e-12, rtol=0), v


def _chain(root=(0.3, 0.7)) -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table(list(root)))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.add("c", cpd.Table([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], ["b"]))
    bn.add("d", cpd.Table([0.25, 0.75]))  # a root on its own
    return bn.double()


def test_evidence_on_a_root_only_needs_no_contraction_and_is_still_checked():
    """Given a, b and c are a chain below it and d is a lone root: all forward, each brute force's; evidence of
    probability zero is still named."""
    bn = _chain()
    rows, logp = brute_joint(bn)
    with mock.patch.object(exact_module, "marginals", side_effect=AssertionError("no contraction")):
        post = bn.posterior(None, {"a": torch.tensor([0, 1])})
    for i in range(2):
        for v in "bcd":
            assert torch.allclose(post[v][i], brute_posterior(bn, rows, logp, {"a": i}, v), atol=1e-12)
    with pytest.raises(EvidenceError, match=r"probability zero .* row\(s\) \[1\]"):
        _chain(root=(1.0, 0.0)).posterior(None, {"a": torch.tensor([0, 1])})


def test_a_table_per_row_and_gradients_through_forward_nodes():
    """A neural node with a context input below an observed root, and a learnable child of it: marginals and
    their gradients in every parameter equal the contraction's."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.4, 0.6]))
    bn.add("z", cpd.Table([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], ["a"]))
    bn.add("y", cpd.Neural(torch.nn.Linear(4, 2).double(), parents=["z"], cardinality=2, context=["c"]))
    bn.add("w", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["y"]))
    bn = bn.double()
    ev = {"a": torch.tensor([0, 1, 1]), "c": torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)}
    params = [p for p in bn.parameters() if p.requires_grad]
    weights = torch.randn(3, 2, dtype=torch.float64)

    def loss_and_grads():
        post = bn.posterior(["y", "w", "z"], ev)
        loss = (post["w"] * weights).sum() + (post["y"] * weights.flip(1)).sum() + post["z"][:, 1].sum()
        return post, torch.autograd.grad(loss, params, allow_unused=True)

    post, grads = loss_and_grads()
    with _contraction_only():
        want, want_grads = loss_and_grads()
    for v in "ywz":
        assert torch.allclose(post[v], want[v], atol=1e-12, rtol=0)
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= 3
    for p, g, h in zip(params, grads, want_grads):  # a's table: no gradient forward, rounding's in the contraction
        zero = torch.zeros_like(p)
        assert torch.allclose(zero if g is None else g, zero if h is None else h, atol=1e-12)
