"""A MarkovNet compile checks the evidence of all its variables in one host read
(hybridpgm/graphs/mrf_compile.py ``_evidence_states``): a query's reads do not grow with the observed variables,
and of several refused variables the first is named, as when each was read on its own."""

from __future__ import annotations

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import MarkovNet


def _chain() -> MarkovNet:
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({f"x{i}": 3 for i in range(8)})
    return mrf.add_factors("pair", [[f"x{i}", f"x{i + 1}"] for i in range(7)], torch.randn(7, 3, 3, generator=g))


def _evidence(count: int) -> dict:
    """Evidence of four rows on ``x1``, ``x2``, ... : integer and float tensors by turns, with unobserved rows."""
    rows = [[0, 2, -1, 1], [1, -1, 0, 2], [2, 0, 1, -1], [-1, 1, 2, 0], [0, 0, -1, 2], [1, 2, 2, -1]]
    out = {}
    for i in range(count):
        t = torch.tensor(rows[i])
        out[f"x{i + 1}"] = t if i % 2 == 0 else torch.where(t < 0, math.nan, t.float())
    return out


def test_the_host_reads_of_a_compile_do_not_grow_with_the_observed_variables(host_reads):
    """Fails on the old code: one read per observed variable (2, 4 and 7 for 1, 3 and 6 variables, the stored
    table's check included), on CUDA one synchronisation each."""
    mrf = _chain()
    counts = []
    for count in (1, 3, 6):
        evidence = _evidence(count)
        mrf.factor_graph(evidence)
        host_reads.clear()
        mrf.factor_graph(evidence)
        counts.append(len(host_reads))
    assert counts == [2, 2, 2], counts


def test_the_answers_are_those_of_the_evidence_given_row_by_row():
    """The marginals of six variables' evidence equal those of each row's observed values alone."""
    mrf = _chain()
    evidence = _evidence(6)
    got = mrf.marginals(evidence=evidence)["x0"]
    for row in range(4):
        one = {v: int(t[row]) for v, t in evidence.items() if not (t[row] < 0 or torch.isnan(t[row].float()))}
        want = mrf.marginals(evidence={v: torch.tensor(s) for v, s in one.items()})["x0"]
        assert torch.allclose(got[row], want, atol=1e-6)


@pytest.mark.parametrize("second", [torch.tensor([0, 5, 0, 0]), "a string", torch.tensor([1j, 0, 0, 0])],
                         ids=["out of range", "not a number", "complex"])
def test_of_two_refused_variables_the_first_is_named(second):
    """A guard: the flags are read together, yet a refused variable is named before a later one, whether that
    one fails a check of its values, is no number or holds no states; and before an unknown name after it."""
    mrf = _chain()
    first = torch.tensor([0.0, 0.5, 1.0, 2.0])
    with pytest.raises(EvidenceError, match=r"evidence for 'x1' holds non-integer values \[0\.5\] \(the first in "
                                            r"row 1\)"):
        mrf.factor_graph({"x0": torch.tensor([0, 1, 2, 0]), "x1": first, "x2": second})
    with pytest.raises(EvidenceError, match=r"evidence for 'x1' has value\(s\) \[-2\] outside 0\.\.2"):
        mrf.factor_graph({"x1": torch.tensor([0, -2, 0, 0]), "nope": torch.tensor(0)})
    with pytest.raises(EvidenceError, match=r"evidence names unknown variable 'nope'"):
        mrf.factor_graph({"nope": torch.tensor(0), "x1": torch.tensor([0, -2, 0, 0])})
