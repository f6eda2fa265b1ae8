"""NumPy inputs with negative strides (``a[::-1]``, ``np.flip``, a reversed pandas frame's ``to_numpy()``).

torch cannot view such arrays (``torch.as_tensor`` raises ``ValueError``), so every entry point that accepts a
NumPy array passes it through :func:`hybridpgm.checks.positive_strides` first; each must give the result of the
same values in a contiguous copy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hybridpgm import LinearChainCRF, MarkovNet
from hybridpgm.checks import positive_strides
from hybridpgm.graphs import BayesNet, cpd

ROWS = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]])


@pytest.fixture(autouse=True)
def single_thread():
    """One intra-op thread: tiny kernels on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net() -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.2, 0.8], [0.6, 0.4]], ["a"]))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["b"]))
    return bn


def _flipped(a: np.ndarray) -> np.ndarray:
    """``a``'s values in an array read backwards (its first stride negative), as ``a`` reversed twice."""
    f = a[::-1].copy()[::-1]
    assert f.strides[0] < 0 and np.array_equal(f, a, equal_nan=a.dtype.kind == "f")
    return f


def _same(x, y) -> None:
    if isinstance(x, dict):
        assert list(x) == list(y)
        for k in x:
            _same(x[k], y[k])
    elif isinstance(x, (tuple, list)):
        assert len(x) == len(y)
        for a, b in zip(x, y):
            _same(a, b)
    else:
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y) if not x.is_floating_point() else torch.allclose(x, y, equal_nan=True)


def test_positive_strides_copies_only_negative_strides():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert positive_strides(a) is a  # no copy of a contiguous array
    view = a[:, ::2]  # positive strides, not contiguous: torch views it as it is
    assert positive_strides(view) is view
    for f in (a[::-1], np.flip(a, 1), a[::-1, ::-2], pd.DataFrame(a).iloc[::-1].to_numpy()):
        out = positive_strides(f)
        assert all(s >= 0 for s in out.strides) and out.dtype == f.dtype and np.array_equal(out, f)
        assert torch.equal(torch.as_tensor(out), torch.as_tensor(f.copy()))
    for other in (3, [1, 2], torch.arange(3).flip(0), np.array(2.5), None):
        assert positive_strides(other) is other


def test_positive_strides_keeps_the_dtype():
    for dtype in (np.float16, np.float32, np.int8, np.uint8, np.bool_):
        f = np.zeros(4, dtype=dtype)[::-1]
        assert positive_strides(f).dtype == np.dtype(dtype)


@pytest.mark.parametrize("call", [
    pytest.param(lambda bn, a: bn.posterior(["a"], {"c": a[:, 2]}), id="posterior evidence"),
    pytest.param(lambda bn, a: bn.log_evidence({"c": a[:, 2], "b": a[:, 1]}), id="log_evidence evidence"),
    pytest.param(lambda bn, a: bn.log_prob(a), id="log_prob array"),
    pytest.param(lambda bn, a: bn.log_prob({"a": a[:, 0], "b": a[:, 1], "c": a[:, 2]}), id="log_prob columns"),
    pytest.param(lambda bn, a: bn.columns(a), id="columns"),
    pytest.param(lambda bn, a: bn.split_missing(a), id="split_missing int"),
    pytest.param(lambda bn, a: bn.log_evidence(pd.DataFrame(a, columns=["a", "b", "c"])), id="DataFrame"),
])
def test_bayes_net_reads_reversed_arrays(call):
    bn = _net()
    _same(call(bn, _flipped(ROWS)), call(bn, ROWS.copy()))


def test_bayes_net_reads_a_reversed_float_array_with_nan():
    bn = _net()
    x = ROWS.astype(float)
    x[1, 2] = np.nan
    _same(bn.split_missing(_flipped(x)), bn.split_missing(x.copy()))
    _same(bn.split_missing(x[::-1]), bn.split_missing(np.ascontiguousarray(x[::-1])))


def _mrf() -> MarkovNet:
    torch.manual_seed(0)
    m = MarkovNet({"a": 2, "b": 3})
    m.add_factor("ab", ["a", "b"], torch.randn(2, 3))
    return m


def test_markov_net_evidence_reads_reversed_arrays():
    m = _mrf()
    a = np.array([1, 0, 1, 0])
    _same(m.marginals(evidence={"a": _flipped(a)}), m.marginals(evidence={"a": a.copy()}))


def test_markov_net_log_prob_reads_reversed_arrays():
    m = _mrf()
    a, b = np.array([1, 0, 1, 0]), np.array([2, 0, 1, 1])
    _same(m.log_prob({"a": _flipped(a), "b": _flipped(b)}), m.log_prob({"a": a, "b": b}))


def test_crf_lengths_read_reversed_arrays():
    torch.manual_seed(0)
    u, tr = torch.randn(3, 5, 4), torch.randn(4, 4)
    lengths = np.array([5, 2, 3])
    d = LinearChainCRF(u, tr, lengths=_flipped(lengths))
    ref = LinearChainCRF(u, tr, lengths=lengths.copy())
    _same(d.lengths, ref.lengths)
    _same(d.log_partition, ref.log_partition)
