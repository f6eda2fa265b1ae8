"""A row of impossible evidence in a batch: ``-inf`` with a zero gradient, the other rows' gradients as alone.

``log_evidence`` documents ``-inf`` for a row whose evidence has probability zero; a user drops those rows
(``-le[torch.isfinite(le)].sum()``) and trains on the rest.  Every space and path must then give the possible
rows exactly the gradient they have when queried alone: the dense joint, the contraction, probability space with
the impossible rows redone in log space, and log space throughout.
"""

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import bn_dense
from hybridpgm.infer.bn_contract import log_evidence_rows
from hybridpgm.infer.bn_dense import dense_log_evidence
from hybridpgm.infer.bn_evidence import network_facts, parse_evidence
from hybridpgm.infer.bn_factors import relevant
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

D = torch.float64


def _small() -> tuple[BayesNet, dict]:
    """a -> b -> c, with b = 1 impossible when a = 1: row 0 of the evidence is impossible, row 1 possible."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", cpd.Table(torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.0, 0.4]], dtype=D), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]], dtype=D), ["b"]))
    return bn, {"a": torch.tensor([1, 0]), "b": torch.tensor([1, 1])}


def _nine() -> tuple[BayesNet, dict]:
    """Nine ternary nodes, each with the two before it as parents (729 joint states: the contraction)."""
    g = torch.Generator().manual_seed(0)
    bn, names = BayesNet(), [f"n{i}" for i in range(9)]
    for i, v in enumerate(names):
        parents = names[max(0, i - 2):i]
        t = torch.softmax(torch.randn(*[3] * len(parents), 3, generator=g, dtype=D), -1)
        if i == 1:  # n1 = 2 impossible when n0 = 1
            t[1, 2] = 0.0
            t = t / t.sum(-1, keepdim=True)
        bn.add(v, cpd.Table(t, parents))
    return bn, {"n0": torch.tensor([1, 0]), "n1": torch.tensor([2, 2]), "n8": torch.tensor([0, 1])}


def _log_evidence(bn: BayesNet, evidence: dict, spaces) -> torch.Tensor:
    """``[N]`` log p(e_n) in the given spaces (``None``: the query's own choice)."""
    ev = parse_evidence(bn, evidence)
    return log_evidence_rows(bn, ev, relevant(network_facts(bn), set(ev.observed) | set(ev.partial)), spaces)


def _grads(value: torch.Tensor, params: list) -> list:
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(params, torch.autograd.grad(value, params, allow_unused=True, retain_graph=True))]


@pytest.mark.parametrize("spaces", [None, ("log",)], ids=["prob-then-log", "log"])
@pytest.mark.parametrize("case", ["dense", "small-contraction", "nine-contraction"])
def test_impossible_row_leaves_the_other_rows_gradients_as_alone(case, spaces, monkeypatch):
    bn, evidence = _nine() if case == "nine-contraction" else _small()
    if case == "small-contraction":
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    params = list(bn.parameters())
    le = _log_evidence(bn, evidence, spaces)
    assert le[0].item() == float("-inf") and torch.isfinite(le[1])
    alone = _log_evidence(bn, {v: t[1:] for v, t in evidence.items()}, spaces)
    torch.testing.assert_close(le[1], alone[0], rtol=0, atol=0)
    for g_batch, g_alone in zip(_grads(le[1], params), _grads(alone[0], params)):
        assert torch.isfinite(g_batch).all()
        torch.testing.assert_close(g_batch, g_alone)
    for g in _grads(le[0], params):  # the impossible row itself: a zero gradient, not NaN
        assert (g == 0).all()
    # what a user writes: drop the impossible rows, train on the rest
    for g, g_alone in zip(_grads(-le[torch.isfinite(le)].sum(), params), _grads(-alone.sum(), params)):
        torch.testing.assert_close(g, g_alone)


def test_public_log_evidence_with_an_impossible_row_has_finite_gradients():
    bn, evidence = _small()  # the dense path, probability space with row 0 redone in log space
    le = bn.log_evidence(evidence)
    grads = torch.autograd.grad(-le[torch.isfinite(le)].sum(), list(bn.parameters()), allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dense", [True, False])
def test_impossible_row_made_by_soft_evidence_keeps_the_likelihood_gradients_finite(dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    bn, _ = _small()
    lik = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.7, 0.1]], dtype=D, requires_grad=True)
    le = bn.log_evidence({"a": torch.tensor([1, 0]), "b": Likelihood(lik)})
    assert le[0].item() == float("-inf") and torch.isfinite(le[1])
    g, = torch.autograd.grad(le[1], lik, retain_graph=True)
    assert (g[0] == 0).all()
    # d log p(e) / d lambda_k = p(a = 0, b = k) / p(e) for the possible row (lambda enters linearly)
    p_ab = torch.tensor([0.2, 0.5, 0.3], dtype=D)
    torch.testing.assert_close(g[1], p_ab / (p_ab @ lik[1].detach()))
    g_all, = torch.autograd.grad(-le[torch.isfinite(le)].sum(), lik)
    assert torch.isfinite(g_all).all()


def test_dense_log_evidence_of_an_all_impossible_row_is_minus_inf_with_zero_gradient():
    joint = torch.tensor([[[float("-inf")] * 2] * 2, [[-1.0, float("-inf")], [-2.0, -0.5]]], dtype=D,
                         requires_grad=True)
    out = dense_log_evidence(joint)
    assert out[0].item() == float("-inf")
    ref = joint[1].detach().reshape(-1).logsumexp(0)
    torch.testing.assert_close(out[1], ref)
    g, = torch.autograd.grad(out[torch.isfinite(out)].sum(), joint)
    assert (g[0] == 0).all()
    torch.testing.assert_close(g[1], (joint[1].detach() - ref).exp())
