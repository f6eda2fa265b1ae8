"""Grouping evidence rows by the pattern of their inner evidence nodes (marginals: tests/infer/test_exact.py)."""

import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import parse_evidence
from hybridpgm.infer.bn_evidence import network_facts
from hybridpgm.infer.row_groups import _estimate, choose_split, row_groups
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


def _ladder(k, card):
    """a -> b0 -> b1 -> ... with every b_i also a child of a: each b_i has children (an inner evidence node)."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.full((card,), 1.0 / card, dtype=torch.float64)))
    for i in range(k):
        pa = ["a"] + ([f"b{i - 1}"] if i else [])
        t = torch.rand(*(card for _ in pa), card, generator=g, dtype=torch.float64) + 0.1
        bn.add(f"b{i}", cpd.Table(t / t.sum(-1, keepdim=True), pa))
    return bn


def _repeated_patterns(bn, k, patterns, reps):
    """``patterns`` random observation patterns of b0..b{k-1}, each in ``reps`` rows (``-1``: not observed)."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    x = bn.sample(patterns * reps)
    seen = (torch.rand(patterns, k, generator=g) < 0.5).repeat(reps, 1)
    return {f"b{i}": torch.where(seen[:, i], x[f"b{i}"].reshape(-1), -1) for i in range(k)}, seen


def _count_searches(monkeypatch):
    """Count the plan searches of the split's cost estimates (one AbsorbingPlan each)."""
    from hybridpgm.infer import row_groups as module

    count = [0]

    class Counting(module.AbsorbingPlan):
        def __init__(self, *args, **kwargs):
            count[0] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(module, "AbsorbingPlan", Counting)
    return count


def _assert_rows_answered_alone(bn, evidence, rows):
    """The batch's marginals of each row in ``rows`` equal that row's evidence asked alone (float64, 1e-12)."""
    with torch.no_grad():
        post = bn.posterior(None, evidence)
        for i in rows:
            row = {v: t[i:i + 1] for v, t in evidence.items() if int(t[i]) >= 0}
            alone = bn.posterior(None, row)
            for v in post:
                want = torch.nn.functional.one_hot(row[v][0], post[v].shape[-1]).double() if v in row else alone[v][0]
                torch.testing.assert_close(post[v][i], want, rtol=0, atol=1e-12)


def test_split_search_few_patterns_many_nodes_stays_within_budget(monkeypatch):
    """Three row patterns over 16 inner nodes (andes' mixed batch in small): at most 8 * 3 + 16 plan searches,
    one per distinct grouping of the patterns; the greedy over single nodes ran 183."""
    bn = _ladder(16, 30)
    evidence, seen = _repeated_patterns(bn, 16, patterns=3, reps=30)
    ev = parse_evidence(bn, evidence)
    count = _count_searches(monkeypatch)
    split = choose_split(bn, ev, set(bn.nodes), tuple(bn.nodes))
    assert count[0] <= 8 * 3 + 16
    assert split  # splitting pays here (30 rows per pattern, 30-state nodes)
    monkeypatch.undo()
    _assert_rows_answered_alone(bn, evidence, rows=range(3))


def test_split_search_cut_by_the_budget_stays_within_it(monkeypatch):
    """Ten row patterns over 20 inner nodes: the greedy runs out of its 8 * 10 + 16 searches and the split by
    the full pattern is costed from the searches kept for it (the unbounded greedy ran 190); the answers are
    those of each row alone."""
    bn = _ladder(20, 14)
    evidence, seen = _repeated_patterns(bn, 20, patterns=10, reps=100)
    ev = parse_evidence(bn, evidence)
    assert len({tuple(r) for r in seen.tolist()}) == 10
    count = _count_searches(monkeypatch)
    split = choose_split(bn, ev, set(bn.nodes), tuple(bn.nodes))
    assert count[0] <= 8 * 10 + 16
    again = choose_split(bn, ev, set(bn.nodes), tuple(bn.nodes))  # cached estimates count too: the same split
    assert again == split
    monkeypatch.undo()
    _assert_rows_answered_alone(bn, evidence, rows=range(10))
    from hybridpgm.infer.row_groups import search_budget

    assert search_budget(10) == 8 * 10 + 16 and search_budget(1000) == 8 * 32 + 16  # the documented bound


def test_split_search_budget_keeps_estimates_for_the_full_pattern(monkeypatch):
    """With 2 estimates per pattern and none extra (3 patterns: 6), the shared estimate and the 3 kept for the
    split by the full pattern leave 2 to the greedy: the searches stay within 6 and the split is one the greedy
    could cost or the full pattern's."""
    from hybridpgm.infer import row_groups as module

    bn = _ladder(16, 30)
    evidence, _ = _repeated_patterns(bn, 16, patterns=3, reps=30)
    ev = parse_evidence(bn, evidence)
    monkeypatch.setattr(module, "_SEARCHES_PER_PATTERN", 2)
    monkeypatch.setattr(module, "_SEARCHES_EXTRA", 0)
    count = _count_searches(monkeypatch)
    split = choose_split(bn, ev, set(bn.nodes), tuple(bn.nodes))
    assert count[0] <= 6
    groups = row_groups(bn, ev, set(bn.nodes), split_on=split) if split else [None]
    assert len(groups) <= 3


class _ClearedAfterWrite(dict):
    """An estimate memo that another thread clears (``len(memo) >= _MAX_ESTIMATES``) right after each write."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.clear()


def test_an_estimate_survives_the_memo_cleared_by_another_thread():
    """Fails before: ``_estimate`` wrote the memo, then read the entry back, gone: KeyError."""
    bn = _chain()
    facts = network_facts(bn)
    args = (bn, facts, frozenset(), frozenset({"b"}), ("a", "b", "c"), False)
    expected = _estimate(*args)
    bn.plan_cache.memo["split_estimates"] = _ClearedAfterWrite()
    assert _estimate(*args) == expected and expected[0] > 0
