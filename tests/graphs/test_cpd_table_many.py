"""Many tables built at once (:meth:`~hybridpgm.graphs.cpd.Table.many`, what :func:`~hybridpgm.graphs.read_bif`
uses): every table is what :class:`~hybridpgm.graphs.cpd.Table` builds alone, its checks run over all the tables
in a few vectorised passes, and a malformed table's error names its node and the row at fault."""

import numpy as np
import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet
from hybridpgm.graphs.cpd import Table

ATOL = 1e-4


def _cases():
    """``(probs, parents)`` of every kind: well-formed (float64, float32, float16, with zeros, no parents), rows
    summing to within a hair of the tolerance on either side, and each malformation the checks look for."""
    g = torch.Generator().manual_seed(0)
    good = torch.rand(3, 2, 4, generator=g, dtype=torch.float64)
    good = good / good.sum(-1, keepdim=True)
    zeros = good.clone()
    zeros[1, 0] = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64)
    at_edge = good.clone()
    at_edge[2, 1, 0] += ATOL  # |sum - 1| = atol (up to rounding): either side of it, as Table alone decides
    past_edge = good.clone()
    past_edge[2, 1, 0] += ATOL * (1 + 1e-9)
    inside = good.clone()
    inside[0, 1, 3] -= ATOL * (1 - 1e-9)
    negative, nan, inf, minus_inf, off = (good.clone() for _ in range(5))
    negative[1, 1, :2] = torch.tensor([-0.25, 0.25 + float(negative[1, 1, :2].sum())])
    nan[0, 0, 2] = float("nan")
    inf[2, 0, 1] = float("inf")
    minus_inf[2, 0, 1] = float("-inf")
    off[1, 0] *= 0.5
    return [
        (good, ["a", "b"]), (good.float(), ("a", "b")), (good.half(), ["a", "b"]), (zeros, ["a", "b"]),
        (good[0, 0], []), (good[0, 0], ()), (good.transpose(0, 1), ["b", "a"]),  # a non-contiguous table
        (at_edge, ["a", "b"]), (past_edge, ["a", "b"]), (inside, ["a", "b"]),
        (negative, ["a", "b"]), (nan, ["a", "b"]), (inf, ["a", "b"]), (minus_inf, ["a", "b"]), (off, ["a", "b"]),
        (good, ["a"]), (torch.zeros(2, 0, 3, dtype=torch.float64), ["a", "b"]),  # wrong dims; a dim of size 0
        (torch.tensor([[1, 0], [0, 1]]), ["a"]), (good.numpy(), ["a", "b"]), ([[0.5, 0.5], [0.1, 0.9]], "a"),
        (good.float().half().double(), ["a", "b"]),
    ]


def _same(a: Table, b: Table) -> None:
    assert a._problem == b._problem
    assert (a.cardinality, a._shape, a.parents, a.prior, a.node) == (b.cardinality, b._shape, b.parents, None, None)
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert list(a._hybridpgm_init) == list(b._hybridpgm_init)  # what a model file records to rebuild it
    assert a._hybridpgm_init["probs"] is b._hybridpgm_init["probs"]


@pytest.mark.parametrize("learnable", [False, True])
def test_many_builds_what_table_builds_alone_for_every_kind_of_table(learnable):
    cases = _cases()
    together = Table.many(cases, learnable=learnable, atol=ATOL)
    assert len(together) == len(cases)
    problems = []
    for (probs, parents), built in zip(cases, together):
        _same(built, Table(probs, parents, learnable=learnable, atol=ATOL))
        problems.append(built._problem)
    assert problems[:7] == [None] * 7 and problems[9] is None  # the well-formed ones and the row just inside
    assert problems[8] is not None and all(p is not None for p in problems[10:17])
    # the malformed ones are refused, naming the node, when declared
    with pytest.raises(ModelSpecError, match=r"node 'x': table has negative, NaN or infinite entries .* first at "
                                             r"\[0, 0, 2\]: nan"):
        BayesNet().add("x", together[11])


def test_many_checks_alone_only_the_tables_a_vectorised_pass_flags(monkeypatch):
    """The work count: of 40 well-formed tables and 2 malformed ones, only the 2 go through the table-by-table
    checks (``_find_problem``); before, every table did."""
    calls = []
    find = Table._find_problem

    def counted(self, probs, prior, atol):
        calls.append(tuple(probs.shape))
        return find(self, probs, prior, atol)

    monkeypatch.setattr(Table, "_find_problem", counted)
    g = torch.Generator().manual_seed(1)
    tables = []
    for i in range(40):
        t = torch.rand(i % 3 + 1, i % 4 + 2, generator=g, dtype=torch.float64)
        tables.append((t / t.sum(-1, keepdim=True), ["p"]))
    tables[7] = (tables[7][0] * 2, ["p"])
    tables[30] = (-tables[30][0], ["p"])
    built = Table.many(tables, learnable=False)
    assert calls == [tuple(tables[7][0].shape), tuple(tables[30][0].shape)]
    assert [i for i, t in enumerate(built) if t._problem is not None] == [7, 30]


def test_a_table_checked_by_many_is_checked_again_when_built_alone_later():
    """What :meth:`Table.many` screened holds while it runs only: the same tensor, edited afterwards, is checked
    again by a later ``Table(...)``."""
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    (first,) = Table.many([(probs, ["a"])])
    assert first._problem is None
    probs[1, 0] = 0.5
    with pytest.raises(ModelSpecError, match=r"row \[1\] \(the parents' states\) sums to 1.25"):
        BayesNet().add("x", Table(probs, ["a"]))


@pytest.mark.parametrize("probs, parents, match", [
    ([[0.5, 0.5], [0.2, 0.4], [0.3, 0.7]], ["a"], r"node 'x': table rows must sum to 1; row \[1\] \(the parents' "
                                                  r"states\) sums to 0.6"),
    ([[[0.5, 0.5], [1, 0]], [[0.2, 0.8], [0.7, 0.7]]], ["a", "b"], r"row \[1, 1\] \(the parents' states\) sums "
                                                                   "to 1.4"),
    ([0.2, 0.2], [], r"table rows must sum to 1; the row sums to 0.4"),
    ([[0.5, 0.5], [1.1, -0.1]], ["a"], r"table has negative, NaN or infinite entries \(parents \['a'\]\), first "
                                       r"at \[1, 1\]: -0.1$"),
])
def test_a_malformed_row_is_named_by_its_parents_states(probs, parents, match):
    """Before, the message said "a row sums to ..." (which row, in a table of thousands of rows, it did not say)
    and "table has negative, NaN or infinite entries" without where."""
    with pytest.raises(ModelSpecError, match=match):
        BayesNet().add("x", Table(torch.tensor(probs, dtype=torch.float64), parents))
    (built,) = Table.many([(torch.tensor(probs, dtype=torch.float64), parents)])
    with pytest.raises(ModelSpecError, match=match):
        BayesNet().add("x", built)


@pytest.mark.parametrize("learnable", [False, True])
def test_building_a_table_sets_no_attribute_through_module_setattr(monkeypatch, learnable):
    """The work count: a table's plain attributes are set without :meth:`torch.nn.Module.__setattr__` (which
    looks each name up among the parameters, buffers and submodules first); before, 8 calls per table."""
    calls = []
    setattr_ = nn.Module.__setattr__

    def counted(self, name, value):
        calls.append(name)
        setattr_(self, name, value)

    monkeypatch.setattr(nn.Module, "__setattr__", counted)
    table = Table(torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64), ["a"], learnable=learnable)
    assert calls == []
    assert table.parents == ("a",) and table.node is None and table.parent_cards == {} and table.prior is None
    assert table.cardinality == 2 and table._shape == (2, 2) and table._problem is None
    buffers = dict(table.named_buffers())
    assert isinstance(table.logits, nn.Parameter) is learnable and ("logits" in buffers) is not learnable
    assert "support" in buffers
    assert table.state_dict()["logits"].tolist() == [[np.log(0.5)] * 2, [0.0, 0.0]]


def test_a_subclass_with_checks_of_its_own_has_every_table_checked_by_them():
    """The screen knows Table's checks only: a subclass's stricter ``_find_problem`` ran for a table built alone
    but was skipped by ``many`` (review A)."""

    class NoZeros(Table):
        def _find_problem(self, probs, prior, atol):
            if (probs == 0).any():
                return "no structural zeros here"
            return super()._find_problem(probs, prior, atol)

    probs = torch.tensor([1.0, 0.0])
    assert NoZeros(probs)._problem == "no structural zeros here"
    assert NoZeros.many([(probs, ())])[0]._problem == "no structural zeros here"
