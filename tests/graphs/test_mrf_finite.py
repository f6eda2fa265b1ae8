"""A MarkovNet's stored tables checked for NaN and infinities in one host read for all families
(hybridpgm/graphs/mrf_finite.py, :meth:`MarkovNet.tables`): a query's reads do not grow with the families, and
of several bad families the first is named, as when each was read on its own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet
from hybridpgm.train.deferred_checks import deferring_checks


def _net(families: int) -> MarkovNet:
    """A chain of 7 binary variables whose 6 pairwise factors are split into ``families`` families (1, 2, 3 or 6),
    their tables drawn once: every split is the same model."""
    g = torch.Generator().manual_seed(0)
    tables = torch.randn(6, 2, 2, generator=g)
    mrf = MarkovNet({f"x{i}": 2 for i in range(7)})
    size = 6 // families
    for f in range(families):
        mrf.add_factors(f"f{f}", [[f"x{i}", f"x{i + 1}"] for i in range(f * size, (f + 1) * size)],
                        tables[f * size:(f + 1) * size])
    return mrf


def test_the_host_reads_of_a_query_do_not_grow_with_the_families(host_reads):
    """Fails on the old code: one read per family (1, 2, 3 and 6 reads for the graph alone), on CUDA one
    synchronisation each; the answers of the splits agree."""
    counts, answers = [], []
    for families in (1, 2, 3, 6):
        mrf = _net(families)
        mrf.factor_graph()
        host_reads.clear()
        mrf.factor_graph()
        counts.append(len(host_reads))
        answers.append(mrf.log_partition())
    assert counts == [1, 1, 1, 1], counts
    assert all(torch.allclose(a, answers[0]) for a in answers[1:])


@pytest.mark.parametrize("bad", [[1, 4], [4, 1], [0, 5], [5]])
def test_of_several_non_finite_tables_the_first_family_is_named(bad):
    """A guard: the flags are read together, yet the error names the first bad family in declaration order."""
    mrf = _net(6)
    with torch.no_grad():
        for f in bad:
            mrf.table_potentials.table(f"f{f}")[0, 1, 0] = float("nan") if f % 2 else float("inf")
    with pytest.raises(ModelSpecError, match=rf"MarkovNet: factor 'f{min(bad)}' has non-finite log-potentials "
                                             r"\(NaN or inf\)"):
        mrf.log_partition()


class _Broken(nn.Module):
    """A neural potential of a ``[2]`` table that returns the wrong shape."""

    def forward(self):
        return torch.zeros(3)


def test_a_stored_and_a_neural_family_keep_their_order():
    """A guard: a bad stored table before a failing neural potential is named first (the neural one raises
    without waiting for the read), and after it is not."""
    first = MarkovNet({"a": 2, "b": 2}).add_factor("t", ["a", "b"], torch.zeros(2, 2))
    first.add_factor("n", ["a"], _Broken())
    second = MarkovNet({"a": 2, "b": 2}).add_factor("n", ["a"], _Broken())
    second.add_factor("t", ["a", "b"], torch.zeros(2, 2))
    for net in (first, second):
        with torch.no_grad():
            net.table_potentials.table("t")[1, 1] = float("nan")
    with pytest.raises(ModelSpecError, match=r"factor 't' has non-finite"):
        first.tables()
    with pytest.raises(ModelSpecError, match=r"factor 'n' has log-potentials of shape \(3,\)"):
        second.tables()


def test_inside_a_step_the_families_wait_for_the_steps_read():
    """Deferred (as in :func:`~hybridpgm.fit`'s step): no read, one pending flag, the first bad family named."""
    mrf = _net(3)
    with torch.no_grad():
        mrf.table_potentials.table("f2")[0, 0, 0] = float("nan")
        mrf.table_potentials.table("f1")[0, 0, 0] = float("-inf")
    with deferring_checks() as pending:
        mrf.tables()
    assert len(pending.flags) == 1 and not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(ModelSpecError, match="factor 'f1' has non-finite"):
        pending.raise_first_failure()


class _Failing(nn.Module):
    """A neural potential that fails on its own."""

    def forward(self):
        raise ValueError("the potential's own failure")


def test_a_failure_other_than_a_table_is_raised_after_the_earlier_tables_pass():
    """A guard: a neural potential's own error comes through unchanged, and a bad stored table before it is named
    first."""
    mrf = MarkovNet({"a": 2}).add_factor("t", ["a"], torch.zeros(2)).add_factor("n", ["a"], _Failing())
    with pytest.raises(ValueError, match="the potential's own failure"):
        mrf.tables()
    with torch.no_grad():
        mrf.table_potentials.table("t")[0] = float("inf")
    with pytest.raises(ModelSpecError, match="factor 't' has non-finite"):
        mrf.tables()


class _Table(nn.Module):
    """A neural potential returning its one learnable ``[2, 2]`` table (no context)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self):
        return self.table


def _neural(families: int) -> MarkovNet:
    """A chain of ``families + 1`` binary variables, one neural pairwise factor per link, tables drawn once."""
    tables = torch.randn(families, 2, 2, generator=torch.Generator().manual_seed(1))
    mrf = MarkovNet({f"x{i}": 2 for i in range(families + 1)})
    for f in range(families):
        mrf.add_factor(f"n{f}", [f"x{f}", f"x{f + 1}"], _Table(tables[f]))
    return mrf


def test_the_host_reads_of_neural_potentials_do_not_grow_with_the_families(host_reads):
    """Fails on the old code: each neural potential's table was read for its finiteness on its own (1, 3 and 6
    ``__bool__`` for 1, 3 and 6 families), on CUDA one synchronisation per factor and call; now one read, with the
    stored tables' flags."""
    counts = []
    for families in (1, 3, 6):
        mrf = _neural(families).add_factor("stored", ["x0"], torch.zeros(2))
        mrf.tables()
        host_reads.clear()
        mrf.tables()
        counts.append(len(host_reads))
    assert counts == [1, 1, 1], counts


@pytest.mark.parametrize("bad", [[1, 4], [4, 1], [0, 5], [5]])
def test_of_several_non_finite_neural_tables_the_first_family_is_named(bad):
    """A guard: the neural tables' flags are read together, yet the first bad family in declaration order is named,
    as when each was read on its own; a stored table keeps its place among them."""
    mrf = _neural(6)
    with torch.no_grad():
        for f in bad:
            mrf.potentials[f"n{f}"].table[0, 1] = float("nan") if f % 2 else float("-inf")
    with pytest.raises(ModelSpecError, match=rf"MarkovNet: factor 'n{min(bad)}' has non-finite log-potentials "
                                             r"\(NaN or inf\)"):
        mrf.log_partition()
    mrf.add_factor("t", ["x0"], torch.zeros(2))
    with torch.no_grad():
        mrf.table_potentials.table("t")[0] = float("nan")
    with pytest.raises(ModelSpecError, match=rf"factor 'n{min(bad)}' has non-finite"):
        mrf.tables()


def test_a_non_finite_neural_table_is_named_before_a_later_potentials_failure():
    """A guard: a neural potential's NaN table is named before the error of a potential declared after it (which
    raises without waiting for the read), as when it was read at once; a NaN after the failure is not reached."""
    first = MarkovNet({"a": 2, "b": 2}).add_factor("n", ["a", "b"], _Table(torch.zeros(2, 2)))
    first.add_factor("f", ["a"], _Failing())
    second = MarkovNet({"a": 2, "b": 2}).add_factor("f", ["a"], _Failing())
    second.add_factor("n", ["a", "b"], _Table(torch.zeros(2, 2)))
    for net in (first, second):
        with torch.no_grad():
            net.potentials["n"].table[1, 0] = float("inf")
    with pytest.raises(ModelSpecError, match="factor 'n' has non-finite"):
        first.tables()
    with pytest.raises(ValueError, match="the potential's own failure"):
        second.tables()


def test_inside_a_step_a_neural_tables_check_waits_for_the_steps_read(host_reads):
    """Fails on the old code (a read at once, the error raised in the middle of the step): deferred, as the stored
    tables' flags are, no read and one pending flag that names the bad neural family."""
    mrf = _neural(3)
    with torch.no_grad():
        mrf.potentials["n2"].table[0, 0] = float("nan")
    with deferring_checks() as pending:
        host_reads.clear()
        mrf.tables()
        assert host_reads == []
    assert len(pending.flags) == 1 and not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(ModelSpecError, match="factor 'n2' has non-finite"):
        pending.raise_first_failure()
