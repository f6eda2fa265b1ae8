"""The rows an evidence table answers by the contraction (:mod:`hybridpgm.infer.evidence_table_rows`): here those
of p(e) under float64's smallest normal number, which the table's float64 entries hold as a subnormal or 0."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import EvidenceTable

D = torch.float64


def _subnormal_net() -> BayesNet:
    """``a -> b -> c`` with entries of ``1e-310``: ``p(a = 0, b = 0) = 1e-620`` (0 in float64)."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([1e-310, 1.0], dtype=D), []))
    bn.add("b", cpd.Table(torch.tensor([[1e-310, 1.0], [0.5, 0.5]], dtype=D), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=D), ["b"]))
    return bn


def _counting(monkeypatch) -> list:
    calls, exact = [], EvidenceTable._exact
    monkeypatch.setattr(EvidenceTable, "_exact",
                        lambda self, v, *args: calls.append(v.clone()) or exact(self, v, *args))
    return calls


@pytest.mark.parametrize("layout", ["subsets", "compact"])
def test_probabilities_under_float64_range_are_answered_by_the_contraction(monkeypatch, layout):
    bn = _subnormal_net()
    table = bn.compile_evidence(["a", "b"], layout=layout)
    calls = _counting(monkeypatch)
    ev = {"a": torch.tensor([0, 0, 0, 1]), "b": torch.tensor([0, 1, -1, 0])}
    want = torch.tensor([-2 * 713.8013788281542, -713.8013788281542, -713.8013788281542, 0.5], dtype=D)
    want[3] = torch.tensor(0.5, dtype=D).log()
    got = table.log_evidence(ev)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)  # was -inf in row 0
    torch.testing.assert_close(got, bn.log_evidence(ev), rtol=1e-12, atol=0)
    post = table.posterior(None, ev)  # raised EvidenceError naming row 0
    ref = bn.posterior(None, ev)
    assert set(post) == set(ref) == {"b", "c"}
    for v in ref:
        torch.testing.assert_close(post[v], ref[v], rtol=0, atol=1e-12)
    torch.testing.assert_close(post["c"][0], torch.tensor([0.25, 0.75], dtype=D), rtol=0, atol=1e-12)
    assert calls and all(bool((v[:, 0] == 0).all()) for v in calls)  # the rows a = 0 only


def test_impossible_rows_stay_impossible():
    bn = _subnormal_net()
    bn.add("d", cpd.Table(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D), ["c"]))
    ev = {"c": torch.tensor([0, 1, 0]), "d": torch.tensor([1, 0, 0])}
    for layout in ("subsets", "compact"):
        table = bn.compile_evidence(["c", "d"], layout=layout)
        got = table.log_evidence(ev)
        assert got[:2].tolist() == [float("-inf")] * 2 and bool(torch.isfinite(got[2]))
        with pytest.raises(Exception, match=r"row\(s\) \[0, 1\]"):
            table.posterior(None, ev)


def test_a_table_without_such_probabilities_reads_its_entries(monkeypatch):
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D), []))
    bn.add("b", cpd.Table(torch.tensor([[1e-300, 1.0], [0.5, 0.5]], dtype=D), ["a"]))
    table = bn.compile_evidence(["a", "b"], layout="subsets")
    calls = _counting(monkeypatch)
    ev = {"a": torch.tensor([0, 1, -1]), "b": torch.tensor([0, 0, 0])}
    torch.testing.assert_close(table.log_evidence(ev), bn.log_evidence(ev), rtol=1e-12, atol=0)
    assert not calls
