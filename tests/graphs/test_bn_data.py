"""BayesNetData: the dtypes of data columns and context inputs (continuous values are never rounded)."""

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _hybrid(context: bool = False) -> BayesNet:
    bn = BayesNet()
    bn.add("A", cpd.Table([0.5, 0.5]))
    bn.add("X", cpd.LinearGaussian(bias=[0.0, 1.0], parents=["A"]))
    if context:
        torch.manual_seed(0)
        bn.add("E", cpd.Neural(torch.nn.Linear(3, 2), ["A"], cardinality=2, context=["u"]))
    return bn


X64 = torch.tensor([0.1, 0.7], dtype=torch.float64)
ROUNDS = r"data column 'X' \(a continuous node\) has dtype torch.float64, the model computes in torch.float32"


def test_float64_continuous_data_for_a_float32_network_is_refused_not_rounded():
    """Before, the model used X = 0.10000000149 for the float64 datum 0.1 without a word."""
    bn = _hybrid()
    a = torch.tensor([1, 0])
    mask = {"A": torch.tensor([True, False]), "X": torch.tensor([True, True])}
    for call in (lambda: bn.columns({"A": a, "X": X64}),
                 lambda: poutine.trace(bn.model).get_trace({"A": a, "X": X64}),
                 lambda: bn.log_prob({"A": a, "X": X64}),
                 lambda: bn.model(torch.stack([a.double(), X64], -1)),  # [N, V] tensor data
                 lambda: bn.model({"A": a, "X": X64}, mask),
                 lambda: bn.split_missing({"A": a, "X": X64})):
        with pytest.raises(DataError, match=ROUNDS + r".*x.to\(torch.float32\).*model.to\(torch.float64\)"):
            call()


def test_exact_conversions_and_discrete_columns_are_unaffected():
    bn = _hybrid()
    # integer and float16 continuous data convert exactly; a list is built in the network's dtype
    for x in (torch.tensor([1, 2]), torch.tensor([0.5, 1.5], dtype=torch.float16), [0.5, 1.5]):
        assert bn.columns({"X": x})["X"].dtype == torch.float32
    # discrete states in float64 or int64 columns: unchanged rules
    for a in (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([1, 0])):
        lp = bn.log_prob({"A": a, "X": X64.float()})
        assert lp.dtype == torch.float32 and lp.shape == (2,)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        bn.model, bn.guide, torch.tensor([[float("nan"), 0.1], [1.0, 0.7]], dtype=torch.float32))
    assert torch.isfinite(torch.tensor(loss))


def test_a_float64_network_takes_float64_data_exactly():
    bn = _hybrid().double()
    tr = poutine.trace(bn.model).get_trace({"A": torch.tensor([1, 0]), "X": X64})
    assert torch.equal(tr.nodes["X"]["value"], X64)
    assert bn.columns({"X": [0.1]})["X"].item() == 0.1  # not rounded through float32 first


def test_float64_context_inputs_for_a_float32_network_are_refused():
    bn = _hybrid(context=True)
    data = {"A": torch.tensor([1, 0]), "X": X64.float(), "E": torch.tensor([0, 1])}
    with pytest.raises(DataError, match=r"context input 'u' has dtype torch.float64, the model computes in "
                                        r"torch.float32"):
        bn.log_prob(data, {"u": torch.zeros(2, 1, dtype=torch.float64)})
    assert bn.log_prob(data, {"u": torch.zeros(2, 1)}).shape == (2,)
    assert bn.log_prob(data, torch.zeros(2, 1, dtype=torch.int64)).shape == (2,)  # integers convert exactly


def test_a_discrete_column_may_hold_state_names():
    """Evidence took state names; data columns gave a raw ``ValueError: too many dimensions 'str'``."""
    from hybridpgm.errors import DataError

    bn = BayesNet().add("rain", cpd.Table([0.2, 0.8]), states=["no", "yes"])
    assert torch.equal(bn.columns({"rain": ["yes", None, "no"]})["rain"], torch.tensor([1, -1, 0]))
    torch.testing.assert_close(bn.log_prob({"rain": ["no", "yes"]}), torch.tensor([0.2, 0.8]).log())
    with pytest.raises(DataError, match="data column 'rain' holds 'maybe', which is not a state of 'rain'"):
        bn.columns({"rain": ["no", "maybe"]})
    with pytest.raises(DataError, match="data column 'rain' must hold states"):
        bn.columns({"rain": [{"no": 1}]})


# ---------------------------------------------------------------- audit 11: data forms, masks, missing markers
def _loss(bn, *args):
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, *args)


def _pair(named: bool = False) -> BayesNet:
    states = {"a": ["F", "T"], "b": ["no", "yes"]} if named else {}
    return BayesNet().add("a", cpd.Table([0.3, 0.7]), states=states.get("a")).add(
        "b", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["a"]), states=states.get("b"))


def test_uint8_255_is_a_state_not_a_missing_entry():
    """Before, ``t == -1`` wrapped to 255 for uint8: a 256-state node's rows in state 255 were dropped from the
    likelihood (uint8 loss 11.58 for int64 loss 21.34), and 255 for a binary node was read as missing."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet().add("pixel", cpd.Table.random(256, generator=g))
    x = torch.tensor([[3], [255], [255], [17]])
    torch.testing.assert_close(_loss(bn, x.to(torch.uint8)), _loss(bn, x))
    assert bn.split_missing(x.to(torch.uint8))[1].all()
    torch.testing.assert_close(bn.log_prob(x.to(torch.uint8)), bn.log_prob(x))
    binary = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(DataError, match=r"column 'a' holds a value outside 0..1"):
        _loss(binary, torch.tensor([[0], [255]], dtype=torch.uint8))


def test_numpy_and_list_masks_are_applied():
    """Before, a NumPy or list mask was treated as a mapping and silently ignored (``v in mask`` False): the
    filled-in zeros were trained on as observed values (loss 5.02 for the exact 1.07)."""
    bn = _pair()
    x = torch.tensor([[1.0, 1], [float("nan"), 1], [1, float("nan")]])
    exact = -bn.log_evidence(dict(zip(bn.nodes, x.T))).sum()
    values, mask = bn.split_missing(x)
    for m in (mask, mask.numpy(), mask.tolist(), mask.long(), {"a": mask[:, 0].numpy(), "b": mask[:, 1].tolist()}):
        torch.testing.assert_close(_loss(bn, values, m), exact)
        torch.testing.assert_close(_loss(bn, (values, m)), exact)
    torch.testing.assert_close(_loss(bn, (values.numpy(), mask.numpy())), exact)


@pytest.mark.parametrize("mask, match", [
    (torch.ones(3, 3, dtype=torch.bool), r"mask must be an \[N, 2\] = \[3, 2\].*shape \(3, 3\)"),
    (torch.ones(2, 2, dtype=torch.bool), r"mask must be an \[N, 2\] = \[3, 2\].*shape \(2, 2\)"),
    (torch.tensor([True, False, True]), r"mask must be an \[N, 2\].*shape \(3,\)"),
    ("abc", r"mask must be an \[N, 2\].*got str"),
    (torch.tensor([[1.0, 0.5], [1, 1], [0, 1]]), r"mask of column 'a' must be bool .*dtype torch.float32"),
    (torch.tensor([[1, 2], [1, 1], [0, 1]]), r"mask of column 'b' holds integers other than 0 and 1"),
    ({"zz": torch.tensor([False, True, True])}, r"mask names \['zz'\], which is not a node \(nodes"),
    ({"a": torch.tensor([True, False])}, r"mask of column 'a' has shape \(2,\), its data column \(3,\)"),
])
def test_a_bad_mask_is_refused_by_shape_dtype_or_key(mask, match):
    """Before: [3, 3] and float / int-2 masks were accepted (0.5 and 2 read as True), a dict naming no node was
    ignored, and [2, 2] or 1-D masks raised a raw RuntimeError / IndexError."""
    with pytest.raises(DataError, match=match):
        _loss(_pair(), torch.tensor([[0.0, 1], [1, 1], [1, 0]]), mask)


def test_numpy_data_and_lists_of_rows_are_read_like_tensors():
    """Before, [N, V] NumPy data or a list of rows raised a raw AttributeError (no ``items``), and a list of two
    rows was unpacked as a (values, mask) pair."""
    bn = _pair()
    arr = np.array([[0, 1], [1, 1], [np.nan, 0]])
    ref = bn.columns(torch.as_tensor(arr))
    for data in (arr, arr.tolist()):
        cols = bn.columns(data)
        assert list(cols) == ["a", "b"]
        for v in cols:
            torch.testing.assert_close(cols[v].double(), ref[v].double(), equal_nan=True)
    torch.testing.assert_close(_loss(bn, arr), _loss(bn, torch.as_tensor(arr)))
    values, mask = bn.split_missing(arr)
    assert mask.tolist() == [[True, True], [True, True], [False, True]]
    two_rows = [[0, 1], [1, 0]]
    torch.testing.assert_close(bn.log_prob(two_rows), bn.log_prob(torch.tensor(two_rows)))
    torch.testing.assert_close(bn.log_prob(np.array(two_rows)), bn.log_prob(torch.tensor(two_rows)))
    named = BayesNet().add("a", cpd.Table([0.5, 0.5]), states=["F", "T"]).add("b", cpd.Table([0.5, 0.5]))
    assert named.columns([["T", 1], [None, 0]])["a"].tolist() == [1, -1]


@pytest.mark.parametrize("data, match", [
    (np.zeros((3, 3)), r"tensor data must be \[N, 2\].*shape \(3, 3\)"),
    (np.zeros(3), r"tensor data must be \[N, 2\].*shape \(3,\)"),
    ([[0, 1], [1]], r"row 1 is \[1\], not a row of 2 values"),
    ([0, 1], r"row 0 is 0, not a row of 2 values"),
    (object(), r"data must be a dict node -> \[N\] column, an \[N, 2\] tensor or array"),
])
def test_bad_array_data_is_refused_by_shape(data, match):
    with pytest.raises(DataError, match=match):
        _pair().columns(data)


def test_the_documented_data_forms_still_read_the_same():
    """dict of columns, [N, V] tensor with NaN, (values, mask) tuple, state-name lists, -1 in integer data."""
    bn = _pair()
    x = torch.tensor([[0.0, 1], [float("nan"), 1], [1, 0]])
    want = _loss(bn, x)
    values, mask = bn.split_missing(x)
    for data in ({"a": x[:, 0], "b": x[:, 1]}, (values, mask), torch.tensor([[0, 1], [-1, 1], [1, 0]])):
        torch.testing.assert_close(_loss(bn, data), want)
    torch.testing.assert_close(_loss(bn, values, {"a": mask[:, 0], "b": mask[:, 1]}), want)
    named = _pair(named=True)
    torch.testing.assert_close(_loss(named, {"a": ["F", None, "T"], "b": ["yes", "yes", "no"]}), want)


def test_to_tensor_and_split_missing_keep_the_missing_markers_of_dict_data():
    """Before, to_tensor turned an integer -1 into the value -1.0 and split_missing gave an all-True mask for
    state-name data with None; fit on that pair then failed with 'value outside 0..1'."""
    bn = _pair(named=True)
    nan = float("nan")
    want = torch.tensor([[0, 1], [nan, 1], [1, nan]])
    for data in ({"a": torch.tensor([0, -1, 1]), "b": torch.tensor([1, 1, -1])},
                 {"a": ["F", None, "T"], "b": ["yes", "yes", None]}):
        torch.testing.assert_close(bn.to_tensor(data), want, equal_nan=True)
        values, mask = bn.split_missing(data)
        assert mask.tolist() == [[True, True], [False, True], [True, False]]
        torch.testing.assert_close(_loss(bn, values, mask), -bn.log_evidence(data).sum())


def test_a_dict_mask_may_mark_a_node_without_a_data_column_missing():
    """Review A: a dict mask naming a node that has no data column was refused even when all False (the mask says
    the node is missing, and it is).  A True entry there (observed, but no value given) is refused by name."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    bn.add("c", cpd.Table([[0.6, 0.4], [0.1, 0.9]], ["b"]))
    data = {"a": torch.tensor([0, 1, 1]), "c": torch.tensor([1, 0, 1])}
    mask = {"a": torch.tensor([True, True, False]), "b": torch.zeros(3, dtype=torch.bool),
            "c": torch.ones(3, dtype=torch.bool)}
    exact = -bn.log_evidence({"a": torch.tensor([0, 1, -1]), "c": data["c"]}).sum()
    torch.testing.assert_close(_loss(bn, data, mask), exact)
    torch.testing.assert_close(_loss(bn, data, {**mask, "b": [0, 0, 0]}), exact)
    with pytest.raises(DataError, match=r"mask of node 'b' marks rows observed \(True\) but the data has no column"):
        _loss(bn, data, {**mask, "b": torch.tensor([False, True, False])})
    with pytest.raises(DataError, match=r"mask of node 'b' has shape \(2,\)"):
        _loss(bn, data, {**mask, "b": torch.zeros(2, dtype=torch.bool)})


def test_duplicated_column_labels_are_refused_not_the_last_kept():
    # pd.concat([left, right], axis=1) holds two columns 'a'; before, dict(df.items()) silently kept the last
    pd = pytest.importorskip("pandas")
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    df = pd.concat([pd.DataFrame({"a": [0, 0, 0], "b": [1, 0, 1]}), pd.DataFrame({"a": [1, 1, 1]})], axis=1)
    for call in (bn.split_missing, bn.columns, bn.to_tensor):
        with pytest.raises(DataError, match=r"more than one column labelled 'a' \(columns \['a', 'b', 'a'\]\)"):
            call(df)
    assert bn.columns(df.loc[:, ~df.columns.duplicated()])["a"].tolist() == [0, 0, 0]


def test_a_column_of_more_than_one_dim_is_refused_naming_the_node_and_its_shape():
    """Found by a review: ``columns`` checked only a column's first dim, so ``[N, 1]`` columns came back ``[N, 1]``
    and ``log_prob`` of them was ``[N, N]`` (every row scored against every other), with no error.  Every node's
    value is one number (a state or a real: no CPD has an event shape), so a column is ``[N]``; a mask does not
    change that, and ``[N, V]`` data (split into ``[N]`` columns) is unaffected."""
    bn = _hybrid()
    a, x = torch.tensor([1, 0, 1]), torch.tensor([0.25, 1.0, 2.0])
    for data, node, shape in (({"A": a[:, None], "X": x}, "A", "3, 1"), ({"A": a, "X": x[:, None]}, "X", "3, 1"),
                              ({"A": [[1], [0], [1]], "X": x.tolist()}, "A", "3, 1"),
                              ({"A": a[None], "X": x[None]}, "A", "1, 3")):
        for call in (lambda: bn.columns(data), lambda: bn.columns(data, {"A": torch.ones(3, dtype=torch.bool)}),
                     lambda: bn.model(data), lambda: bn.log_prob(data)):
            with pytest.raises(DataError, match=rf"data column '{node}' has shape \({shape}\): a column is \[N\]"):
                call()
    cols = bn.columns(torch.stack([a.float(), x], -1))
    assert cols["A"].shape == cols["X"].shape == (3,)
