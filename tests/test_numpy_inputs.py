"""NumPy inputs with negative strides (``a[::-1]``, ``np.flip``, a reversed pandas frame's ``to_numpy()``).

torch cannot view such arrays (``torch.as_tensor`` raises ``ValueError``), so every entry point that accepts a
NumPy array passes it through :func:`hybridpgm.checks.torch_readable` first; each must give the result of the
same values in a contiguous copy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hybridpgm import LinearChainCRF, MarkovNet
from hybridpgm.checks import torch_readable
from hybridpgm.graphs import BayesNet, cpd
from tests.diagnostics.arviz_groups import group_names

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
    assert torch_readable(a) is a  # no copy of a contiguous array
    view = a[:, ::2]  # positive strides, not contiguous: torch views it as it is
    assert torch_readable(view) is view
    for f in (a[::-1], np.flip(a, 1), a[::-1, ::-2], pd.DataFrame(a).iloc[::-1].to_numpy()):
        out = torch_readable(f)
        assert all(s >= 0 for s in out.strides) and out.dtype == f.dtype and np.array_equal(out, f)
        assert torch.equal(torch.as_tensor(out), torch.as_tensor(f.copy()))
    for other in (3, [1, 2], torch.arange(3).flip(0), np.array(2.5), None):
        assert torch_readable(other) is other


def test_positive_strides_keeps_the_dtype():
    for dtype in (np.float16, np.float32, np.int8, np.uint8, np.bool_):
        f = np.zeros(4, dtype=dtype)[::-1]
        assert torch_readable(f).dtype == np.dtype(dtype)


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


def _bn(prep, arrays: dict) -> BayesNet:
    """A network ``a -> b``, ``a -> y``, ``(a, y) -> z``, ``(a, y) -> c`` from ``prep`` of ``arrays``."""
    a = {k: prep(v) for k, v in arrays.items()}
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table(a["table"], ["a"]))
    bn.add("y", cpd.LinearGaussian(a["bias"], None, a["scale"], ["a"]))
    bn.add("z", cpd.LinearGaussian(a["bias"], a["weight"], a["scale"], ["a", "y"]))
    bn.add("c", cpd.Neural(torch.nn.Linear(3, 2), ["a", "y"], 2))
    return bn.double()


CPD_ARRAYS = {"table": np.array([[0.2, 0.8], [0.6, 0.4]]), "bias": np.array([-1.0, 2.0]),
              "scale": np.array([0.5, 1.5]), "weight": np.array([[0.3], [-0.7]])}
DATA = {"a": np.array([0, 1, 1, 0]), "b": np.array([1, 1, 0, 0]), "y": np.array([0.5, -1.0, 2.0, 0.1]),
        "z": np.array([1.0, 0.0, -2.0, 3.0]), "c": np.array([0, 1, 0, 1])}


def test_table_and_linear_gaussian_read_reversed_arrays():
    flipped, ref = _bn(_flipped, CPD_ARRAYS), _bn(np.copy, CPD_ARRAYS)
    _same(flipped.log_prob(DATA), ref.log_prob(DATA))
    _same(dict(flipped.named_parameters()), dict(ref.named_parameters()))


def test_bayes_net_reads_a_reversed_continuous_column():
    bn = _bn(np.copy, CPD_ARRAYS)
    data = {k: _flipped(v) for k, v in DATA.items()}
    _same(bn.columns(data), bn.columns({k: v.copy() for k, v in DATA.items()}))
    _same(bn.log_prob(data), bn.log_prob(DATA))


def test_neural_cpd_reads_reversed_inputs():
    c = _bn(np.copy, CPD_ARRAYS).cpds["c"]
    _same(c.log_table({"y": _flipped(DATA["y"])}), c.log_table({"y": DATA["y"].copy()}))


def test_masks_read_reversed_arrays():
    bn = _net()
    mask = np.array([[True, False, True], [True, True, False], [False, True, True], [True, True, True]])
    _same(bn.columns(ROWS, mask=_flipped(mask)), bn.columns(ROWS, mask=mask.copy()))
    columns = {"a": ROWS[:, 0], "b": ROWS[:, 1]}
    m = {"a": _flipped(mask[:, 0]), "c": _flipped(np.zeros(4, dtype=bool))}
    _same(bn.columns(columns, mask=m), bn.columns(columns, mask={"a": mask[:, 0].copy(), "c": np.zeros(4, bool)}))


def test_likelihood_reads_reversed_arrays():
    from hybridpgm.infer.soft_evidence import Likelihood

    bn = _net()
    lik = np.array([[0.2, 0.9], [0.7, 0.1]])
    _same(bn.posterior(["a"], {"c": Likelihood(_flipped(lik))}), bn.posterior(["a"], {"c": Likelihood(lik.copy())}))


def test_ising_grid_reads_reversed_arrays():
    from hybridpgm.graphs import ising_grid

    coupling, field = np.array([0.5, -0.2, 0.3, 0.1]), np.array([0.1, -0.4, 0.2, 0.0])
    m = ising_grid(2, 2, _flipped(coupling), _flipped(field))
    ref = ising_grid(2, 2, coupling.copy(), field.copy())
    _same(m.marginals(), ref.marginals())


def test_hmm_posterior_reads_reversed_lengths():
    from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm

    hmm = random_hmm(2, 3, generator=torch.Generator().manual_seed(1))
    x, lengths = torch.tensor([[2, 0, 1], [1, 1, 0], [0, 2, 2]]), np.array([3, 1, 2])
    crf, ref = hmm_posterior(hmm, x, _flipped(lengths)), hmm_posterior(hmm, x, lengths.copy())
    _same(crf.lengths, ref.lengths)
    _same(crf.log_partition, ref.log_partition)


def _dataset_values(idata) -> dict:
    return {(g, v): torch.as_tensor(idata[g][v].values) for g in group_names(idata) for v in idata[g].data_vars}


def test_arviz_converters_read_reversed_arrays():
    from hybridpgm.diagnostics import from_categorical, from_importance

    lw, draws = np.array([-1.0, -0.5, -np.inf, -2.0]), np.array([[0.1, 1.0], [0.4, 2.0], [0.3, 3.0], [0.2, 4.0]])
    seeded = {"generator": torch.Generator().manual_seed(0)}, {"generator": torch.Generator().manual_seed(0)}
    _same(_dataset_values(from_importance(_flipped(lw), {"x": _flipped(draws)}, **seeded[0])),
          _dataset_values(from_importance(lw.copy(), {"x": draws.copy()}, **seeded[1])))
    probs = np.array([[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]])
    _same(_dataset_values(from_categorical({"v": _flipped(probs)})),
          _dataset_values(from_categorical({"v": probs.copy()})))


def _figure_data(fig) -> list:
    """What the figure's axes draw: images, line and bar data, and texts."""
    out = []
    for ax in fig.axes:
        out += [torch.as_tensor(np.asarray(im.get_array())) for im in ax.images]
        out += [torch.as_tensor(np.asarray(line.get_xydata())) for line in ax.lines]
        out += [torch.as_tensor([p.get_height() for p in ax.patches])]
        out += [t.get_text() for t in ax.texts + ([] if ax.get_legend() is None else ax.get_legend().get_texts())]
    return out


def _same_figure(x, y) -> None:
    a, b = _figure_data(x), _figure_data(y)
    assert len(a) == len(b) and len(a) > 1
    for u, v in zip(a, b):
        assert u == v if isinstance(u, str) else torch.equal(u, v)


def test_plots_read_reversed_arrays():
    from hybridpgm.diagnostics.plots import plot_coverage, plot_image_grid, plot_log_weights, plot_sequence_marginals

    images = np.linspace(0, 1, 24).reshape(4, 6)
    _same_figure(plot_image_grid(_flipped(images), (2, 3)), plot_image_grid(images.copy(), (2, 3)))
    lw = np.array([-1.0, -0.5, -3.0, -2.0])
    _same_figure(plot_log_weights(_flipped(lw)), plot_log_weights(lw.copy()))
    y, mean, std = np.array([0.1, 0.5, -1.0]), np.array([0.0, 0.4, -0.5]), np.array([1.0, 0.2, 0.3])
    _same_figure(plot_coverage(_flipped(y), _flipped(mean), _flipped(std)), plot_coverage(y, mean, std))
    marginals, labels = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]), np.array([1, 0, 1])
    _same_figure(plot_sequence_marginals(_flipped(marginals), _flipped(labels)),
                 plot_sequence_marginals(marginals.copy(), labels.copy()))
