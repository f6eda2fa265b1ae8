"""Grouping evidence rows by the pattern of their inner evidence nodes (marginals: tests/infer/test_exact.py)."""

import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import parse_evidence
from hybridpgm.infer.row_groups import row_groups
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
