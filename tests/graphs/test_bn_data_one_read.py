"""A BayesNet's data columns checked in one host read per call (hybridpgm/graphs/bn_data.py ``columns`` and
``_inputs`` under :func:`~hybridpgm.train.deferred_checks.read_checks_once`; the range of integer columns of
continuous nodes by :func:`~hybridpgm.data.validation.as_model_dtype` with ``defer=True``; the discrete columns'
states in ``_observed_columns``): the reads do not grow with the columns, none inside fit's step, and of several bad
columns the first is named."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _gaussians(k: int) -> BayesNet:
    """``a`` and its continuous children ``y0..y{k-1}``."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    for i in range(k):
        bn.add(f"y{i}", cpd.LinearGaussian([0.0, 1.0 + i], None, 1.0, ["a"]))
    return bn


def _columns(k: int) -> dict:
    return {"a": torch.tensor([0, 1, 0]), **{f"y{i}": torch.tensor([1, -2, 3], dtype=torch.int32) for i in range(k)}}


def test_the_host_reads_of_columns_do_not_grow_with_integer_continuous_columns(host_reads):
    """Fails on the old code: each integer column of a continuous node had its range read, its minimum and its
    maximum one by one (2, 6 and 12 reads for 1, 3 and 6 columns), on CUDA one synchronisation each; now one read
    per call, and none inside fit's step (the flags wait for the step's read)."""
    counts = []
    for k in (1, 3, 6):
        bn = _gaussians(k)
        host_reads.clear()
        out = bn.columns(_columns(k))
        counts.append(len(host_reads))
        assert all(out[f"y{i}"].dtype == torch.float32 for i in range(k))
    assert counts == [1, 1, 1], counts
    bn, big = _gaussians(6), torch.tensor([0, 2 ** 24 + 1, 2])
    with deferring_checks() as pending:
        host_reads.clear()
        bn.columns(_columns(6))
        bn.columns({"y0": torch.tensor([1, 2, 3]), "y1": big, "y2": -big})
        assert host_reads == [] and len(pending.flags) == 9
    with pytest.raises(DataError, match=r"data column 'y1' \(a continuous node\) has dtype torch.int64 with values in "
                                        r"\[0, 16777217\]"):
        pending.raise_first_failure()


def test_of_several_bad_columns_the_first_is_named():
    """A guard: an integer column outside float32's exact range is named before a later column's error of any
    kind (one that is not a node, one of another dtype, a later integer column out of range) and after an earlier
    one's, as when each column was read at once."""
    bn = _gaussians(3)
    big = torch.tensor([0, 2 ** 24 + 1, 2])
    message = r"data column 'y1' \(a continuous node\) has dtype torch.int64 with values in \[0, 16777217\]"
    for later in ({"nope": torch.zeros(3)}, {"y2": torch.zeros(3, dtype=torch.float64)}, {"y2": -big}):
        with pytest.raises(DataError, match=message):
            bn.columns({"a": torch.tensor([0, 1, 0]), "y1": big, **later})
    with pytest.raises(DataError, match="data has column 'nope', which is not a node"):
        bn.columns({"nope": torch.zeros(3), "y1": big})


def test_integer_context_inputs_are_checked_in_one_read(host_reads):
    """Fails on the old code (two reads per input): a neural CPD's integer context inputs, converted to the
    network's dtype where that is exact, are checked in one read; one out of range is named."""
    bn = BayesNet().add("c", cpd.Neural(torch.nn.Linear(2, 2), context=["u", "v"]))
    rows = {"u": torch.tensor([[1], [2]]), "v": torch.tensor([[3], [4]])}
    host_reads.clear()
    bn._inputs(rows)
    assert len(host_reads) == 1, host_reads
    with pytest.raises(DataError, match=r"context input 'v' has dtype torch.int64 with values in \[3, 16777217\]"):
        bn._inputs({"u": rows["u"], "v": torch.tensor([[3], [2 ** 24 + 1]])})


def _tables(k: int) -> BayesNet:
    """``a0..a{k-1}``, independent three-state nodes."""
    bn = BayesNet()
    for i in range(k):
        bn.add(f"a{i}", cpd.Table([0.2, 0.3, 0.5]))
    return bn


def test_the_states_of_the_discrete_columns_are_read_once(host_reads):
    """Fails on the old code (one read per discrete column: 2, 4 and 7 reads for 1, 3 and 6 columns): the
    discrete columns' state checks of ``_observed_columns`` (run by every ``model`` and ``log_prob``) are read
    together, in the one read of the columns' missing pattern (two reads on b7588d8: the pattern's apart)."""
    counts = []
    for k in (1, 3, 6):
        bn = _tables(k)
        cols = bn.columns({f"a{i}": torch.tensor([0, 2, -1]) for i in range(k)})
        host_reads.clear()
        bn._observed_columns(cols)
        counts.append(len(host_reads))
    assert counts == [1, 1, 1], counts


def test_of_several_columns_outside_the_states_the_first_is_named():
    """A guard (passed before too): the first column in order whose observed value is not a state is named, also
    before a later continuous column that bypassed ``columns`` and is refused."""
    bn = _tables(3).add("y", cpd.LinearGaussian(0.0))
    good, bad = torch.tensor([0, 2, -1]), torch.tensor([0, 3, 1])
    with pytest.raises(DataError, match="'a1'"):
        bn._observed_columns({"a0": good, "a1": bad, "a2": bad * 2})
    with pytest.raises(DataError, match="'a2'"):
        bn._observed_columns({"a0": good, "a1": good, "a2": bad, "y": torch.zeros(3, dtype=torch.float64)})
    with pytest.raises(DataError, match="data column 'y'"):
        bn._observed_columns({"a0": good, "y": torch.zeros(3, dtype=torch.float64)})
