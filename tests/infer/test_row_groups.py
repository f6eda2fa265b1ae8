"""Grouping evidence rows by the pattern of their inner evidence nodes (marginals: tests/infer/test_exact.py)."""

import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import parse_evidence
from hybridpgm.infer.row_groups import choose_split, row_groups
from hybridpgm.infer.soft_evidence import Likelihood


def _chain():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["b"]))
    return bn


def test_rows_grouped_by_inner_nodes_only():
    bn = _chain()
    ev = parse_evidence(bn, {"b": torch.tensor([0, -1, 1, -1, 0]), "c": torch.tensor([1, -1, 0, 0, -1])})
    groups = row_groups(bn, ev, set(bn.nodes))
    # b has a child: rows split by whether b is observed; c is a leaf and stays an indicator
    assert sorted(sorted(idx.tolist()) for idx, _ in groups) == [[0, 2, 4], [1, 3]]
    for idx, sub in groups:
        assert "c" in sub.partial and sub.n == idx.numel()
        if 0 in idx.tolist():
            assert sub.observed["b"].tolist() == [0, 1, 0] and "b" not in sub.partial
        else:
            assert "b" not in sub.observed and "b" not in sub.partial


def test_no_groups_for_leaves_soft_evidence_or_full_observation():
    bn = _chain()
    assert row_groups(bn, parse_evidence(bn, {"c": torch.tensor([1, -1])}), set(bn.nodes)) is None
    assert row_groups(bn, parse_evidence(bn, {"b": torch.tensor([1, 0])}), set(bn.nodes)) is None
    soft = parse_evidence(bn, {"b": Likelihood(torch.tensor([[0.2, 0.8], [1.0, 1.0]]))})
    assert row_groups(bn, soft, set(bn.nodes)) is None


def _hub(card=60):
    """a -> b -> c with ``card`` states each: evidence on the middle node b keeps a card x card joint per row."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.full((card,), 1.0 / card, dtype=torch.float64)))
    for v, p in (("b", "a"), ("c", "b")):
        t = torch.rand(card, card, generator=g, dtype=torch.float64) + 0.1
        bn.add(v, cpd.Table(t / t.sum(-1, keepdim=True), [p]))
    return bn


def test_choose_split_indexes_an_expensive_inner_node_away():
    bn = _hub()
    n = 4000
    b = torch.randint(0, 60, (n,), generator=torch.Generator().manual_seed(1))
    b[::2] = -1
    ev = parse_evidence(bn, {"b": b})
    targets = set(bn.nodes)
    assert choose_split(bn, ev, targets, ("a", "b", "c")) == ["b"]
    with torch.no_grad():
        post = bn.posterior(None, {"b": b})
    for i in (0, 1):  # a row that misses b and one that observes it, answered alone
        row = {} if int(b[i]) < 0 else {"b": b[i:i + 1]}
        alone = bn.posterior(["a", "c"], row) if row else bn.posterior(["a", "c"])
        for q in ("a", "c"):
            torch.testing.assert_close(post[q][i], alone[q][0] if row else alone[q])


def test_choose_split_keeps_one_contraction_when_it_is_cheap():
    bn = _chain()
    ev = parse_evidence(bn, {"b": torch.tensor([0, -1, 1, -1, 0])})
    assert choose_split(bn, ev, set(bn.nodes), ("a", "b", "c")) == []
    few = _hub()
    ev = parse_evidence(few, {"b": torch.tensor([3, -1])})  # two rows: a second contraction costs more
    assert choose_split(few, ev, set(few.nodes), ("a", "b", "c")) == []
