"""Array-likes on their way to torch (:func:`hybridpgm.checks.torch_readable`): pandas objects whatever their
index, NumPy masked arrays, big-endian and read-only arrays.  Before, a ``Series`` with the index ``7, 8, 9``
reached ``torch.as_tensor`` raw (a bare ``ValueError``: torch looked up label 0), a masked array's hidden values
were read as data, a big-endian array raised torch's byte-order ``ValueError`` and a read-only one leaked
torch's "not writable" ``UserWarning``."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hybridpgm.checks import torch_readable
from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm
from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, LinearChainCRF, MarkovNet, cpd

pd = pytest.importorskip("pandas")


def test_tensors_and_plain_writable_arrays_pass_without_a_copy():
    t, a = torch.arange(3), np.arange(6).reshape(2, 3)
    assert torch_readable(t) is t and torch_readable(a) is a
    assert torch_readable([1, 2]) == [1, 2] and torch_readable(3) == 3


def test_a_series_with_a_non_default_index_gives_its_values():
    s = pd.Series([3, 1, 2], index=[7, 8, 9])
    assert torch.as_tensor(torch_readable(s)).tolist() == [3, 1, 2]  # torch would look up the label 0
    np.testing.assert_array_equal(torch_readable(pd.DataFrame({"a": [1, 2]}, index=[5, 6])), [[1], [2]])


def test_masked_arrays_are_refused_with_a_masked_entry_and_read_without():
    with pytest.raises(DataError, match=r"data column 'a' is a NumPy masked array of shape \(3,\) with 1 masked"):
        torch_readable(np.ma.masked_array([1, 0, 1], mask=[False, True, False]), "data column 'a'")
    got = torch_readable(np.ma.masked_array([1, 0, 1], mask=False))
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, [1, 0, 1])


@pytest.mark.parametrize("dtype", [">i8", ">f4", ">i2"])
def test_big_endian_arrays_are_converted_exactly(dtype):
    a = np.array([[3, -1], [2, 5]], dtype=dtype)[:, ::-1]
    got = torch_readable(a)
    assert got.dtype == a.dtype.newbyteorder("=") and got.dtype.isnative
    np.testing.assert_array_equal(got, a)
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(a.astype(got.dtype)))


def test_read_only_arrays_are_copied():
    a = np.broadcast_to(np.array([0.25, 0.5]), (3, 2))
    got = torch_readable(a)
    assert got.flags.writeable
    np.testing.assert_array_equal(got, a)


def _bn():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    return bn


def test_filtered_pandas_inputs_read_like_default_indexed_ones():
    frame = pd.DataFrame({"len": [3, 2, 3, 1, 2, 3, 3, 1, 2, 3], "a": [0, 1] * 5, "b": [1, 0, 1, 1, 0] * 2})
    test = frame.iloc[7:]
    plain = test.reset_index(drop=True)
    unary, transition = torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 2)
    torch.testing.assert_close(LinearChainCRF(unary, transition, lengths=test["len"]).log_partition,
                               LinearChainCRF(unary, transition, lengths=plain["len"]).log_partition)
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.tensor([[2.0, -1.0], [0.0, 1.0]]))
    torch.testing.assert_close(mrf.log_prob(test[["a", "b"]]), mrf.log_prob(plain[["a", "b"]]))
    hmm = random_hmm(2, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 3, (3, 3), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hmm_posterior(hmm, x, test["len"]).marginals,
                               hmm_posterior(hmm, x, plain["len"]).marginals)


def test_big_endian_data_and_lengths_read_like_native_ones():
    bn, data = _bn(), np.array([[1, 0], [0, 1], [-1, 1]])
    for native in (data, np.where(data < 0, np.nan, data)):  # -1 / NaN marks a missing entry
        values, mask = bn.split_missing(native.astype(native.dtype.newbyteorder(">")))
        expected = bn.split_missing(native)
        assert values.dtype == expected[0].dtype
        torch.testing.assert_close((values, mask), expected)
    unary = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    crf = LinearChainCRF(unary, torch.zeros(2, 2), lengths=np.array([2, 3, 1], ">i8"))
    assert crf.lengths.tolist() == [2, 3, 1]


def test_masked_arrays_are_refused_not_read_by_their_hidden_values():
    a = np.ma.masked_array([1, 0, 1], mask=[False, True, False])
    bn = _bn()
    with pytest.raises(DataError, match="masked array"):
        bn.split_missing(np.ma.column_stack([a, np.array([1, 1, 0])]))
    with pytest.raises(DataError, match="data column 'a' is a NumPy masked array"):
        bn.columns({"a": a})
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.zeros(2, 2))
    # each names the argument and the mask (before, MarkovNet and Likelihood said "must be a state number")
    with pytest.raises(EvidenceError, match="MarkovNet evidence: the value of 'a' is a NumPy masked array"):
        mrf.marginals("exact", evidence={"a": a})
    with pytest.raises(EvidenceError, match="evidence for 'a' is a NumPy masked array"):
        bn.posterior(None, {"a": a})
    from hybridpgm.infer.soft_evidence import Likelihood

    with pytest.raises(EvidenceError, match="Likelihood for 'a' is a NumPy masked array"):
        bn.posterior(None, {"a": Likelihood(np.ma.masked_array([0.2, 0.8], mask=[False, True]))})


_READ_ONLY = """
import numpy as np, torch, warnings
from hybridpgm.graphs import BayesNet, LinearChainCRF, cpd
bn = BayesNet()
bn.add("a", cpd.Table([0.3, 0.7]))
ro = np.array([1, 0, 1])
ro.flags.writeable = False
case = {case}
if case == 0:
    bn.split_missing(ro[:, None])
elif case == 1:
    bn.columns({{"a": ro}})
else:
    LinearChainCRF(torch.zeros(3, 2, 2), torch.zeros(2, 2), lengths=np.broadcast_to(np.array(2), (3,)))
"""


@pytest.mark.parametrize("case", [0, 1, 2])
def test_read_only_arrays_leak_no_torch_warning(case):
    # torch warns once per process: a fresh interpreter per case, every UserWarning an error
    run = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", _READ_ONLY.format(case=case)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]



def test_hmm_posterior_lengths_from_numpy_and_pandas():
    # before: a raw TypeError (object array), ValueError (big-endian, a Series indexed 1..3) from torch
    hmm = random_hmm(2, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 3, (3, 4), generator=torch.Generator().manual_seed(1))
    expected = hmm_posterior(hmm, x, torch.tensor([2, 3, 1])).marginals
    for lengths in (np.array([2, 3, 1], ">i8"), pd.Series([4, 2, 3, 1]).iloc[1:]):
        torch.testing.assert_close(hmm_posterior(hmm, x, lengths).marginals, expected)
    with pytest.raises(DataError, match="hmm_posterior: lengths must be integers in 1..4, got ndarray of dtype object"):
        hmm_posterior(hmm, x, np.array([2, 3, 1], dtype=object))
