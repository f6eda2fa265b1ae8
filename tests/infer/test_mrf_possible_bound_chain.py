"""Evidence impossible only through a chain of factors: BP and mean field raise the exact queries' EvidenceError
naming the evidence (:func:`~hybridpgm.infer.mrf_possible_bound.impossible_evidence_error` on their error paths).

Found in session 37 (MRFEVID, left): x0 = x1 = x2 = x3 written as doubled ``finfo.min`` tables, given x0 = 0 and
x3 = 1, leaves every state of every variable a finite one-pass bound, so the check before the iterations passes;
BP's messages then went NaN and mean field's field had no finite state, and both raised their own ModelSpecError
("overflow ... use penalties well inside the range"), where the exact queries (and Gibbs) raise EvidenceError."""

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import mrf_possible_bound

NEG = torch.finfo(torch.float32).min
EQ = torch.tensor([[0.0, NEG], [NEG, 0.0]])  # twice on an edge: x_i = x_j, -inf summed off the diagonal
EVIDENCE = {"x0": torch.tensor([0, 0]), "x3": torch.tensor([0, 1])}  # model 1 impossible, model 0 not
MESSAGE = r"{}: the evidence of model\(s\) \[1\] has probability zero \(model 1: evidence x0=0, x3=1\)"


def _equal_chain():
    m = MarkovNet({f"x{i}": 2 for i in range(4)})
    for i in range(3):
        for copy in range(2):
            m.add_factor(f"e{i}{copy}", [f"x{i}", f"x{i + 1}"], EQ.clone())
    return m


def test_the_one_pass_bound_misses_the_chain_and_the_propagated_one_finds_it():
    fg = _equal_chain().factor_graph(EVIDENCE)
    assert mrf_possible_bound.impossible_rows(fg).tolist() == [False, False]
    assert mrf_possible_bound.propagated_impossible_rows(fg).tolist() == [False, True]
    assert _equal_chain().log_partition(evidence=EVIDENCE)[1].item() == -math.inf


@pytest.mark.parametrize("query", [
    ("BeliefPropagation", lambda m: m.marginals("bp", evidence=EVIDENCE)),
    ("BeliefPropagation", lambda m: m.log_partition("bp", evidence=EVIDENCE)),
    ("BeliefPropagation", lambda m: m.map_assignment(EVIDENCE, method="bp")),
    ("MeanField", lambda m: m.marginals("mean_field", evidence=EVIDENCE)),
    ("MeanField", lambda m: m.marginals("mean_field", evidence=EVIDENCE, tol=0.0)),
    ("MeanField", lambda m: m.log_partition("mean_field", evidence=EVIDENCE)),
    ("MeanField", lambda m: m.log_partition("mean_field", evidence=EVIDENCE, tol=0.0)),
], ids=["bp-marginals", "bp-log-z", "bp-map", "mf-marginals", "mf-marginals-tol0", "mf-log-z", "mf-log-z-tol0"])
def test_bp_and_mean_field_raise_the_evidence_error_naming_the_evidence(query):
    """Fails on the old code: BeliefPropagation's and MeanField's ModelSpecError."""
    prefix, call = query
    with pytest.raises(EvidenceError, match=MESSAGE.format(prefix)):
        call(_equal_chain())


def _random_net(seed: int, edges: list, card: int):
    """Random unaries and pairwise tables on ``edges``, a few entries hard-forbidden (doubled ``finfo.min``)."""
    g = torch.Generator().manual_seed(seed)
    names = sorted({v for e in edges for v in e})
    m = MarkovNet({f"v{v}": card for v in names})
    for i, (a, b) in enumerate(edges):
        t = torch.randn(card, card, generator=g)
        t = torch.where(torch.rand(card, card, generator=g) < 0.45, NEG, t)
        for copy in range(2):
            m.add_factor(f"f{i}{copy}", [f"v{a}", f"v{b}"], t)
    for v in names:
        m.add_factor(f"u{v}", [f"v{v}"], torch.randn(card, generator=g))
    return m, len(names)


@pytest.mark.parametrize("loopy", [False, True])
def test_the_propagated_bound_is_sound_and_on_trees_exact(loopy):
    """Against the exact log Z of 40 random nets with hard constraints, evidence on two variables: a model found
    impossible always has log Z_e = -inf (sound), and on trees (chains and stars) every impossible one is found
    (arc consistency decides tree-structured constraints)."""
    found = 0
    for seed in range(40):
        edges = [(0, 1), (1, 2), (2, 3), (1, 4)] + ([(3, 0), (4, 2)] if loopy else [])
        m, n = _random_net(seed, edges, 3)
        ev = {"v0": torch.tensor([0, 1, 2]), f"v{n - 2}": torch.tensor([2, 0, 1])}
        exact = m.log_partition(evidence=ev) == -math.inf
        propagated = mrf_possible_bound.propagated_impossible_rows(m.factor_graph(ev))
        assert not (propagated & ~exact).any(), seed
        if not loopy:
            assert torch.equal(propagated, exact), seed
        found += int(propagated.sum())
    assert found >= 10, found  # the nets do hold impossible evidence


def test_log_partition_by_mean_field_of_evidence_one_factor_rules_out_is_the_evidence_error():
    """Found in session 37: ``log_partition("mean_field")`` of evidence the one-pass bound finds impossible (b's
    two states each break a doubled constraint) raised mean field's ModelSpecError; now the EvidenceError naming
    the evidence, as ``marginals("mean_field")`` raises (exact's log_partition answers -inf)."""
    from tests.infer.test_mrf_exact import _impossible_triangle

    mrf, ev = _impossible_triangle()
    assert mrf.log_partition(evidence=ev).item() == -math.inf
    with pytest.raises(EvidenceError, match=r"MeanField: the evidence of model\(s\) \[0\] has probability zero "
                                            r"\(model 0: evidence a=0, c=1\)"):
        mrf.log_partition("mean_field", evidence=ev)
