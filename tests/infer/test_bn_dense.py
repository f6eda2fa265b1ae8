"""The dense joint of a tiny relevant network gives the contraction's answers, values and gradients."""

import pytest
import torch

from hybridpgm.infer import bn_dense
from hybridpgm.infer.bn_dense import dense_free_dims
from hybridpgm.infer.bn_evidence import BATCH
from tests.graphs.bn_helpers import random_bn, single_thread, sprinkler  # noqa: F401 (autouse fixture)


def _queries(bn, evidence):
    post = bn.posterior(None, evidence)
    return post, bn.log_evidence(evidence)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # probability space, log space
@pytest.mark.parametrize("seed", range(4))
def test_dense_joint_equals_contraction(seed, dtype, monkeypatch):
    bn = random_bn(seed, 6, zeros=seed % 2 == 1, dtype=dtype)
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    torch.manual_seed(seed)
    s = bn.sample(5)
    evidence = {"x5": s["x5"], "x3": torch.where(torch.arange(5) % 2 == 0, s["x3"], -1)}
    dense = _queries(bn, evidence)
    monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    contracted = _queries(bn, evidence)
    for v in dense[0]:
        torch.testing.assert_close(dense[0][v], contracted[0][v])
    torch.testing.assert_close(dense[1], contracted[1])
    params = list(bn.parameters())
    w = torch.linspace(0.5, 2.0, 5, dtype=dtype)[:, None]

    def grads(result):
        loss = sum((w * p).sum() for p in result[0].values()) + result[1].sum()
        return torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)

    for a, b in zip(grads(dense), grads(contracted)):
        if a is None or b is None:
            assert (a if b is None else b) is None or (a if b is None else b).abs().max() < 1e-6
        else:
            torch.testing.assert_close(a, b)


def test_only_small_joints_are_dense():
    cards = {"a": 4, "b": 8, "c": 8}
    assert dense_free_dims([(BATCH, "a"), ("a", "b"), ("b", "c")], cards, 1) == ("a", "b", "c")
    assert dense_free_dims([(BATCH, "a"), ("a", "b"), ("b", "c")], cards, 10_000) is None  # too many entries
    assert dense_free_dims([("a", "b"), ("b", "c"), (BATCH, "c")], {**cards, "c": 64}, 1) is None
    assert dense_free_dims([], cards, 1) is None


def test_dense_path_names_impossible_rows():
    from hybridpgm.errors import EvidenceError

    bn = sprinkler()  # wet = 1 is impossible without rain and sprinkler
    ev = {"rain": torch.tensor([0, 0]), "sprinkler": torch.tensor([0, 1]), "wet": torch.tensor([1, 1])}
    with pytest.raises(EvidenceError, match=r"row\(s\) \[0\]"):
        bn.posterior(None, ev)
    with pytest.raises(EvidenceError, match=r"row\(s\) \[0\]"):
        bn.posterior("rain", {"sprinkler": ev["sprinkler"], "wet": ev["wet"], "rain": torch.tensor([0, -1])})
    assert torch.isneginf(bn.log_evidence(ev)[0]) and torch.isfinite(bn.log_evidence(ev)[1])


@pytest.mark.parametrize("expanded", [False, True])
def test_every_marginal_of_a_table_in_one_product_equals_its_own_sum(expanded):
    g = torch.Generator().manual_seed(0)
    table = torch.rand(1 if expanded else 5, 2, 3, 4, dtype=torch.float64, generator=g)
    if expanded:  # a joint without a row dim, broadcast over the rows
        table = table.expand(5, 2, 3, 4)
    free = ("a", "b", "c")
    got = bn_dense._sum_to_each(table, free, ["c", "a", "b"])
    want = [table.sum((1, 2)), table.sum((2, 3)), table.sum((1, 3))]
    assert [m.shape for m in got] == [(5, 4), (5, 2), (5, 3)]
    for m, w in zip(got, want):
        torch.testing.assert_close(m, w, rtol=1e-14, atol=0)
    assert bn_dense._sum_to_each(table, free, []) == []


def test_a_query_under_inference_mode_leaves_later_queries_differentiable():
    """Found by a test-order failure: the cached marginalising matrix of the first query was an inference tensor
    when that query ran under ``torch.inference_mode()``, and every later query of the same shape that autograd
    records raised "Inference tensors cannot be saved for backward"."""
    bn_dense._marginaliser.cache_clear()
    bn = sprinkler().double()
    for c in bn.cpds.values():
        c.logits = torch.nn.Parameter(c.logits.detach().clone())
    evidence = {"wet": torch.tensor([1, 0])}
    with torch.inference_mode():
        first = bn.posterior("sprinkler", evidence)
    again = bn.posterior("sprinkler", evidence)
    torch.testing.assert_close(again.detach(), first.clone())
    grads = torch.autograd.grad(again[:, 1].sum(), list(bn.parameters()), allow_unused=True)
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)
