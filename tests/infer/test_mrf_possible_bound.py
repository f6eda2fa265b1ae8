"""``impossible_rows``: the bound that finds evidence of probability zero before loopy BP, mean field or Gibbs
runs (:mod:`hybridpgm.infer.mrf_possible_bound`).

Found by an audit (NUMERIC findings 3 and 4): those methods never form :math:`\\log Z_e`, so evidence every allowed
assignment of which scores ``-inf`` was answered (Gibbs drew the forbidden state 0, BP gave marginals).  The bound
must be sound (never a model whose exact :math:`\\log Z_e` is finite) and find the one-factor cases."""

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer.mrf_possible_bound import check_possible, impossible_rows

NEG = torch.finfo(torch.float32).min


def _audit_net():
    """The audit's net: a = 1 pays ``finfo.min`` in the unary and in every entry of ab, -inf summed."""
    m = MarkovNet({"a": 2, "b": 2, "c": 2})
    m.add_factor("u", ["a"], torch.tensor([0.0, NEG]))
    m.add_factor("ab", ["a", "b"], torch.tensor([[0.0, 0.0], [NEG, NEG]]))
    m.add_factor("bc", ["b", "c"], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return m


def _equality_chain(n: int):
    """x0 = x1 = ... = x_{n-1}, each equality two tables of ``finfo.min`` off the diagonal (-inf summed)."""
    names = [f"x{i}" for i in range(n)]
    m = MarkovNet({v: 2 for v in names})
    eq = torch.tensor([[0.0, NEG], [NEG, 0.0]])
    for i in range(n - 1):
        for copy in ("", "'"):
            m.add_factor(f"e{i}{copy}", [names[i], names[i + 1]], eq.clone())
    return m


def test_the_audits_evidence_is_found_row_by_row():
    fg = _audit_net().factor_graph({"a": torch.tensor([1, 0, -1])})
    assert impossible_rows(fg).tolist() == [True, False, False]
    with pytest.raises(EvidenceError, match=r"q: the evidence of model\(s\) \[0\] has probability zero .*a=1"):
        check_possible(fg, "q")


def test_a_constraint_over_one_factor_is_found_and_one_over_a_chain_of_them_is_left_to_the_methods():
    """x0 = 0, x2 = 1 contradicts through both factors of x1 (found); x0 = 0, x3 = 1 only through a chain of three
    (every variable keeps a state of finite bound: not found here, exact says -inf)."""
    m = _equality_chain(3)
    assert impossible_rows(m.factor_graph({"x0": torch.tensor([0, 0]), "x2": torch.tensor([1, 0])})).tolist() == [
        True, False]
    m = _equality_chain(4)
    ev = {"x0": torch.tensor(0), "x3": torch.tensor(1)}
    assert m.log_partition("exact", evidence=ev).item() == -math.inf
    assert impossible_rows(m.factor_graph(ev)).tolist() == [False]


@pytest.mark.parametrize("seed", range(20))
def test_sound_against_the_exact_log_partition(seed):
    """Random nets of ``finfo.min`` penalties (one or two per entry, so sums past the range happen) and random
    evidence: every model the bound finds has exact log Z_e = -inf, and an all-finite model is never found."""
    g = torch.Generator().manual_seed(seed)
    cards = {"a": 2, "b": 3, "c": 2, "d": 3}
    m = MarkovNet(cards)
    for name, scope in [("ab", "ab"), ("bc", "bc"), ("cd", "cd"), ("da", "da"), ("ab2", "ab"), ("c", "c")]:
        shape = [cards[v] for v in scope]
        table = torch.randn(shape, generator=g)
        table = torch.where(torch.rand(shape, generator=g) < 0.35, torch.full(shape, NEG), table)
        m.add_factor(name, list(scope), table)
    ev = {v: torch.randint(-1, c, (16,), generator=g) for v, c in cards.items()}
    fg = m.factor_graph(ev)
    found = impossible_rows(fg)
    log_z = m.log_partition("exact", evidence=ev)
    assert not bool((found & (log_z > -math.inf)).any())
    finite = MarkovNet(cards)
    for name, scope in [("ab", "ab"), ("cd", "cd")]:
        finite.add_factor(name, list(scope), torch.randn([cards[v] for v in scope], generator=g) * 30)
    assert not bool(impossible_rows(finite.factor_graph(ev)).any())


def test_half_precision_tables():
    """float16 penalties of its own finfo.min overflow as float32's do."""
    neg = torch.finfo(torch.float16).min
    m = MarkovNet({"a": 2, "b": 2})
    m.add_factor("u", ["a"], torch.tensor([0.0, neg], dtype=torch.float16))
    m.add_factor("ab", ["a", "b"], torch.tensor([[0.0, 0.0], [neg, neg]], dtype=torch.float16))
    assert impossible_rows(m.factor_graph({"a": torch.tensor([1, 0])})).tolist() == [True, False]
