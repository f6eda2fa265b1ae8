"""BayesNetLogProb: ``BayesNet.log_prob`` of single examples, shared 0-d values, pandas rows, NumPy scalars and
context inputs, and under ``vmap`` (hybridpgm/graphs/bn_log_prob.py)."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError, DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _ab(b=((0.5, 0.5), (0.5, 0.5)), **kw) -> BayesNet:
    return BayesNet().add("a", cpd.Table([0.5, 0.5], **kw)).add("b", cpd.Table(list(map(list, b)), ["a"], **kw))


def test_log_prob_of_a_single_zero_d_example_is_zero_d():
    """One example, one 0-d value per node, as MarkovNet.log_prob scores one: before, a DataError ("data
    columns must be [N] and of one length N: {'a': (), ...}").  A 0-d result equal to the one-row answer, for
    0-d tensors, Python numbers, NumPy scalars and state names alike, a continuous node included; a neural CPD's
    context input for the one row may come without its row dim."""
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]), states=["off", "on"])
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    bn.add("x", cpd.LinearGaussian([0.5, -1.0], parents=["a"], scale=2.0))
    row = bn.log_prob({"a": torch.tensor([1]), "b": torch.tensor([0]), "x": torch.tensor([0.25])})
    for one in ({"a": torch.tensor(1), "b": torch.tensor(0), "x": torch.tensor(0.25)},
                {"a": 1, "b": 0, "x": 0.25}, {"a": "on", "b": np.int64(0), "x": np.float32(0.25)}):
        got = bn.log_prob(one)
        assert got.shape == ()
        torch.testing.assert_close(got, row[0])
    with pytest.raises(DataError, match="complete rows"):
        bn.log_prob({"a": None, "b": 0, "x": 0.25})  # a missing entry: refused as in a row

    torch.manual_seed(0)
    net = BayesNet()
    net.add("z", cpd.Neural(torch.nn.Linear(3, 2), [], 2, context=["u"]))
    u = torch.randn(3)
    want = net.log_prob({"z": torch.tensor([1])}, {"u": u[None]})[0]
    for inputs in (u, {"u": u}, {"u": u[None]}):
        got = net.log_prob({"z": torch.tensor(1)}, inputs)
        assert got.shape == ()
        torch.testing.assert_close(got, want)


def _a_b_x():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]), states=["off", "on"])
    bn.add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    return bn.add("x", cpd.LinearGaussian([0.5, -1.0], parents=["a"], scale=2.0))


def test_log_prob_shares_a_zero_d_value_among_rows_as_the_queries_do():
    """Found by an audit: a 0-d value beside ``[N]`` columns was refused by log_prob ("data columns must be [N] and
    of one length N: {'a': (), 'b': (3,), ...}") where log_evidence of the same complete rows, and every query's
    evidence, reads it as the node's value in every row.  Now it is that, as a state name or a NumPy scalar too;
    columns of several lengths are still refused."""
    bn = _a_b_x()
    b, x = torch.tensor([0, 1, 0]), torch.tensor([0.25, 1.0, 2.0])
    rows = bn.log_prob({"a": torch.tensor([1, 1, 1]), "b": b, "x": x})
    for a in (torch.tensor(1), 1, "on", np.int64(1), np.array(1)):
        got = bn.log_prob({"a": a, "b": b, "x": x})
        assert got.shape == (3,) and torch.equal(got, rows)
    torch.testing.assert_close(bn.log_evidence({"a": 1, "b": b, "x": x}), rows)
    shared_x = bn.log_prob({"a": [1, 0], "b": [0, 0], "x": np.float32(0.25)})
    assert torch.equal(shared_x, bn.log_prob({"a": [1, 0], "b": [0, 0], "x": torch.tensor([0.25, 0.25])}))
    assert torch.equal(bn.log_prob({"a": 1, "b": b[:1], "x": x[:1]}), rows[:1])  # beside a batch of one: [1]
    with pytest.raises(DataError, match=r"one length N: \{'a': \(\), 'b': \(2,\), 'x': \(1,\)\}"):
        bn.log_prob({"a": 1, "b": [0, 1], "x": [0.25]})


def test_log_prob_of_one_row_of_a_data_frame_is_zero_d():
    """Found by an audit: a pandas ``Series`` (``df.iloc[0]``, a mapping of 0-d values) raised a raw
    ``TypeError: 'numpy.ndarray' object is not callable`` (its ``values`` is an array, not a method)."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    row = pd.DataFrame({"a": ["on"], "b": [0], "x": [np.float32(0.25)]}).iloc[0]  # an object Series
    got = bn.log_prob(row)
    assert got.shape == () and torch.equal(got, bn.log_prob({"a": [1], "b": [0], "x": [0.25]})[0])


def test_log_prob_shares_a_zero_d_value_only_beside_n_columns():
    """Found by a review: beside a 0-d value, an ``[N, 1]`` column was measured by ``len`` as ``[N]``, so
    ``{"a": 1, "b": tensor([[0], [1], [0]]), "x": x}`` scored ``[3, 3]``; a ragged list of lists raised NumPy's
    raw ``ValueError`` (inhomogeneous shape).  Both are DataErrors naming the column."""
    bn = _a_b_x()
    x = torch.tensor([0.25, 1.0, 2.0])
    with pytest.raises(DataError, match=r"data column 'b' has shape \(3, 1\): a column is \[N\]"):
        bn.log_prob({"a": 1, "b": torch.tensor([[0], [1], [0]]), "x": x})
    with pytest.raises(DataError, match=r"data column 'b' must hold states"):
        bn.log_prob({"a": 1, "b": [[0], [1, 0], [0]], "x": x})


def test_log_prob_reads_a_numpy_scalar_as_data_of_its_dtype():
    """Found by a review: a NumPy float64 scalar became a list of Python numbers, built in the network's float32,
    so ``np.float64(0.1)`` (alone, beside ``[N]`` columns, or in ``df.iloc[0]``) scored 0.1 rounded where the
    same value as a float64 column, ``df`` or ``df.iloc[[0]]`` is refused.  Now the same data gets the same error;
    a float64 network scores it as the one-row column."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    column = np.array([0.1])
    with pytest.raises(DataError, match=r"data column 'x' \(a continuous node\) has dtype torch.float64") as refused:
        bn.log_prob({"a": [1], "b": [0], "x": column})
    expected = str(refused.value)
    for values in ({"a": 1, "b": 0, "x": np.float64(0.1)}, {"a": [1, 0], "b": [0, 1], "x": np.float64(0.1)},
                   pd.DataFrame({"a": ["on"], "b": [0], "x": [0.1]}).iloc[0],  # an object Series
                   pd.DataFrame({"a": [1.0], "b": [0.0], "x": [0.1]}).iloc[0]):  # a float64 Series
        with pytest.raises(DataError) as refused:
            bn.log_prob(values)
        assert str(refused.value) == expected
    bn64 = _a_b_x().double()
    want = bn64.log_prob({"a": [1], "b": [0], "x": column})[0]
    for values in ({"a": 1, "b": 0, "x": np.float64(0.1)}, pd.DataFrame({"a": [1.0], "b": [0.0], "x": [0.1]}).iloc[0]):
        assert torch.equal(bn64.log_prob(values), want)


def test_log_prob_under_vmap_names_the_batch_to_pass_instead():
    """``log_prob`` reads its rows and tables on the host: under ``vmap`` over the rows it raises
    ``ConfigError`` naming ``BayesNet.log_prob`` and the batch to pass (torch's raw "data-dependent control flow"
    ``RuntimeError`` before), and the batch it asks for scores each row as a loop does."""
    bn = _ab(b=((0.9, 0.1), (0.2, 0.8)))
    a, b = torch.tensor([[0, 1], [1, 1]]), torch.tensor([[1, 0], [0, 0]])
    with pytest.raises(ConfigError, match=r"BayesNet\.log_prob does not support torch\.func\.vmap"):
        torch.func.vmap(lambda x, y: bn.log_prob({"a": x, "b": y}))(a, b)
    batched = bn.log_prob({"a": a.reshape(-1), "b": b.reshape(-1)}).reshape(2, 2)
    loop = torch.stack([bn.log_prob({"a": x, "b": y}) for x, y in zip(a, b)])
    assert torch.equal(batched, loop)


def test_log_prob_reads_a_numpy_context_input_as_a_tensor_and_refuses_a_list_by_name():
    """A NumPy array is the one context input as a tensor is, in a batch and for one 0-d example (a raw
    ``TypeError: unhashable type`` before); a list names the accepted forms (it was read as a dict of names)."""
    torch.manual_seed(0)
    net = BayesNet().add("z", cpd.Neural(torch.nn.Linear(3, 2), [], 2, context=["u"]))
    u = torch.randn(3)
    batch = net.log_prob({"z": torch.tensor([1])}, u[None])
    assert torch.equal(net.log_prob({"z": torch.tensor([1])}, u[None].numpy()), batch)
    single = net.log_prob({"z": torch.tensor(1)}, u.numpy())
    assert single.shape == () and torch.equal(single, batch[0])
    with pytest.raises(DataError, match=r"context inputs must be a tensor or array .* got list.*\['u'\]"):
        net.log_prob({"z": 1}, u.tolist())


def test_log_prob_of_a_row_of_a_float32_frame_equals_that_row_of_the_frame():
    """Review D: pandas makes a row of int64 and float32 columns float64, so ``df.iloc[0]`` of a float32 frame that
    ``log_prob(df)`` scores was refused as float64 data; entries float32 holds exactly are read as numbers."""
    pd = pytest.importorskip("pandas")
    bn = _a_b_x()
    frame = pd.DataFrame({"a": [1, 0, 1], "b": [0, 1, 0], "x": np.float32([0.25, 1.0, 2.0])})
    assert torch.equal(bn.log_prob(frame.iloc[0]), bn.log_prob(frame)[0])
