"""A discrete column of BayesNet data (what ``bn.model`` -- so ``fit`` -- and ``bn.log_prob`` read) holds whole
states ``0..K-1``, with ``-1`` (integer or float) or ``NaN`` where missing, the convention of the evidence of the
exact queries and of MarkovNet; a mask, where given, wins over the marker ``-1``.  A non-integer and a value
outside the states get their own ``DataError``, naming the column, the first bad value and its row; inside
``fit``'s step the check waits for the step's host read."""

import math

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.train.deferred_checks import deferring_checks
from tests.graphs.recorded_ops import RecordedOps


def _net():
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.2, 0.8], [0.6, 0.4]], ["a"]))
    return bn.add("x", cpd.LinearGaussian(bias=[0.0, 1.0], parents=["b"])).double()


def _loss(bn, data, mask=None):
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data, mask)


ENTRIES = {"model": lambda bn, d: _loss(bn, d), "log_prob": lambda bn, d: bn.log_prob(d)}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("value, row, shown", [
    (0.5, 1, r"column 'b' holds a non-integer value: 0.5 in row 1 of the data; the states of 'b' are the whole "
             r"numbers 0..1 \(NaN or -1 where missing\)"),
    (-1.5, 2, r"column 'b' holds a non-integer value: -1.5 in row 2 of the data"),
    (2.0, 0, r"column 'b' holds a value outside 0..1: 2.0 in row 0 of the data \(NaN or -1 where missing\)"),
    (-2.0, 1, r"column 'b' holds a value outside 0..1: -2.0 in row 1 of the data"),
    (math.inf, 2, r"column 'b' holds a value outside 0..1: inf in row 2 of the data"),
])
def test_bad_states_name_the_column_value_and_row(entry, value, row, shown):
    """Before: every one of them read "column 'b' holds a value outside 0..1", 0.5 (inside 0..1) included, with
    no value and no row."""
    data = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, -1.0], [1.0, 1.0, 2.0]], dtype=torch.float64)
    data[row, 1] = value
    with pytest.raises(DataError, match=shown):
        ENTRIES[entry](_net(), data)


def test_integer_data_names_the_value_and_row():
    """Before: "column 'a' holds a value outside 0..1" (no value, no row); a uint8 column has no missing marker,
    so its message names none."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(DataError, match=r"column 'a' holds a value outside 0..1: -2 in row 1 of the data "
                                        r"\(-1 where missing\)(\n|$)"):
        _loss(bn, torch.tensor([[0], [-2]]))
    with pytest.raises(DataError, match=r"column 'a' holds a value outside 0..1: 255 in row 0 of the data(\n|$)"):
        _loss(bn, torch.tensor([[255], [1]], dtype=torch.uint8))


def test_the_check_waits_for_the_training_steps_read_and_keeps_its_message():
    """Inside fit's step (deferring_checks) the loss is computed without a host read of the data; the recorded
    check raises the specific message when the step reads it."""
    data = torch.tensor([[0.0, 0.5, 0.3], [1.0, 1.0, -1.0]], dtype=torch.float64)
    with deferring_checks() as pending:
        loss = _loss(_net(), data)
    assert torch.isfinite(loss) and [bool(f) for f in pending.flags].count(False) == 1
    with pytest.raises(DataError, match=r"column 'b' holds a non-integer value: 0.5 in row 0 of the data"):
        pending.raise_first_failure()


def test_float_minus_one_in_a_discrete_column_is_missing_and_in_a_continuous_one_a_value():
    """-1.0 in a discrete column is missing, as NaN is (and as -1 is in integer data and in evidence); in the
    continuous column 'x' it is a value.  Before: bn.model refused the discrete -1.0 ("outside 0..1") and
    split_missing kept it as an observed entry."""
    bn = _net()
    minus_one = torch.tensor([[0.0, -1.0, 0.3], [-1.0, 1.0, -1.0]], dtype=torch.float64)
    nan = torch.tensor([[0.0, math.nan, 0.3], [math.nan, 1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(_loss(bn, minus_one), _loss(bn, nan), rtol=0, atol=0)
    values, mask = bn.split_missing(minus_one)
    assert mask.tolist() == [[True, False, True], [False, True, True]]
    assert values.tolist() == [[0.0, 0.0, 0.3], [0.0, 1.0, -1.0]]
    torch.testing.assert_close(_loss(bn, values, mask), _loss(bn, nan), rtol=0, atol=0)
    assert bn.columns(minus_one)["b"].isnan().tolist() == [True, False]
    assert bn.columns(minus_one)["x"].tolist() == [0.3, -1.0]
    with pytest.raises(DataError, match=r"log_prob scores complete rows; columns \['a', 'b'\] have missing entries"):
        bn.log_prob(minus_one)
    # the exact queries read the column as evidence the same way
    cols = {k: t for k, t in bn.columns(minus_one).items()}
    torch.testing.assert_close(bn.log_evidence(cols).sum(), -_loss(bn, nan), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_a_mask_marking_a_minus_one_observed_wins_over_the_marker(dtype):
    """Review B F8: where a mask is given, it says which entries are observed, so a -1 it marks observed is a bad
    value, refused (the message says why), and with the mask False there the entry is missing.  NaN is never a
    state: missing whatever the mask.  Before: the -1 was missing whatever the mask said."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.2, 0.8], [0.6, 0.4]], ["a"])).double()
    data = torch.tensor([[0, -1], [1, 1]], dtype=dtype)
    with pytest.raises(DataError, match=r"column 'b' holds a value outside 0..1: -1(\.0)? in row 0 of the data, an "
                                        r"entry the mask marks observed: where a mask is given, -1 is not read as "
                                        r"missing \(set the mask False there\)"):
        _loss(bn, data, torch.ones(2, 2, dtype=torch.bool))
    assert bn.columns(data, torch.ones(2, 2, dtype=torch.bool))["b"].tolist() == [-1.0, 1.0]
    nan = torch.tensor([[0.0, math.nan], [1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False], [True, True]])
    torch.testing.assert_close(_loss(bn, data, mask), _loss(bn, nan), rtol=0, atol=0)
    torch.testing.assert_close(_loss(bn, nan, torch.ones(2, 2, dtype=torch.bool)), _loss(bn, nan), rtol=0, atol=0)
    torch.testing.assert_close(_loss(bn, data), _loss(bn, nan), rtol=0, atol=0)  # no mask: -1 is missing


def _ops(bn, *args) -> list:
    bn.columns(*args)  # warm
    with RecordedOps() as counted:
        bn.columns(*args)
    return counted.ops


def test_a_discrete_float_column_costs_no_copy_per_model_call():
    """Review B F2: ``bn.model`` (fit's hot path) reads its data with ``columns`` on every call.  A floating
    discrete column under a mask (the ``(values, mask)`` pairs of ``split_missing``) costs the ops of a continuous
    one: the mask says what is missing.  Without a mask, its -1 become NaN in two ops.  Before: a comparison, a
    ``full`` and a ``where`` (a NaN copy of the column) more, in both cases."""
    discrete = BayesNet().add("a", cpd.Table([0.5, 0.5])).double()
    continuous = BayesNet().add("a", cpd.LinearGaussian(bias=0.0)).double()
    values = torch.tensor([[0.0], [1.0], [1.0]], dtype=torch.float64)
    pair = (values, torch.tensor([[True], [False], [True]]))
    assert len(_ops(discrete, pair)) == len(_ops(continuous, pair)), (_ops(discrete, pair), _ops(continuous, pair))
    assert len(_ops(discrete, values)) <= len(_ops(continuous, values)) + 2, _ops(discrete, values)


def test_a_missing_name_is_missing_whatever_the_mask_says():
    """In a column of state names or objects, ``None`` is missing, as ``NaN`` and ``pd.NA`` are, also under a
    mask marking it observed: only the number ``-1`` yields to a mask.  (The names became indices with ``-1`` for
    ``None``, so a True mask refused it, naming a ``-1`` the user never wrote.)"""
    import numpy as np

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    data = {"a": np.array([0, 1, None, 1], dtype=object), "b": np.array([1, None, 0, 1], dtype=object)}
    observed = torch.ones(4, 2, dtype=torch.bool)
    plain = bn.columns(data)  # a name column's missing entries: -1, as documented
    assert [plain[v].tolist() for v in ("a", "b")] == [[0, 1, -1, 1], [1, -1, 0, 1]]
    masked = bn.columns(data, observed)  # under a True mask too: missing (NaN), not a refused -1
    assert [torch.isnan(masked[v]).tolist() for v in ("a", "b")] == [[False, False, True, False],
                                                                    [False, True, False, False]]
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    assert math.isfinite(elbo.loss(bn.model, bn.guide, data, observed))


def test_split_missing_of_a_pair_keeps_the_masks_word():
    """``split_missing((values, mask))`` returns the pair's mask: a ``-1`` the mask marks observed stays observed,
    for ``model`` to refuse (it became a missing entry, so ``fit`` trained on it silently), and an entry the mask
    hides is missing."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["a"]))
    values = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    split_values, split_mask = bn.split_missing((values, mask))
    assert split_mask.tolist() == mask.tolist() and split_values[1, 0] == -1
    with pytest.raises(DataError, match=r"-1\.0 in row 1 of the data, an entry the mask marks observed"):
        TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, split_values, split_mask)
    assert bn.split_missing(values)[1][1].tolist() == [False, True]  # no mask: the marker


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_to_tensor_refuses_a_minus_one_the_mask_marks_observed(dtype):
    """``to_tensor((values, mask))`` returns floats without a mask, in which a discrete node's ``-1.0`` reads as
    missing: a ``-1`` the mask marks observed (a bad state, refused by ``model``) is refused here by node, value
    and row, instead of coming back as ``-1.0`` and being read, on its way back in, as a missing entry.  With the
    mask False there the entry is ``NaN``; a continuous node's ``-1.0`` is a value and stays.  Before: the
    ``-1.0`` came back, and ``log_evidence`` / ``model`` read that row's ``b`` as unobserved."""
    bn = _net()
    values = torch.tensor([[0, 1, -1], [1, -1, 2], [1, 0, 0]], dtype=dtype)
    observed = torch.ones(3, 3, dtype=torch.bool)
    for pair in ((values, observed), (values.numpy(), observed.numpy()),
                 ({v: values[:, i] for i, v in enumerate(bn.nodes)}, observed)):
        with pytest.raises(DataError, match=r"to_tensor: column 'b' holds a value outside 0..1: -1(\.0)? in row 1 "
                                            r"of the data, an entry the mask marks observed"):
            bn.to_tensor(pair)
    hidden = observed.clone()
    hidden[1, 1] = False
    x = bn.to_tensor((values, hidden))
    assert torch.isnan(x).nonzero().tolist() == [[1, 1]] and x[0, 2] == -1  # x is continuous: -1.0 a value
    # the refusal agrees with what model says of the same pair (its message, without the prefix)
    with pytest.raises(DataError, match=r"column 'b' holds a value outside 0..1: -1(\.0)? in row 1 of the data, an "
                                        r"entry the mask marks observed"):
        _loss(bn, values, observed)


def test_a_number_minus_one_in_a_column_of_names_yields_to_the_mask_as_elsewhere():
    """In an object array or a list holding a ``None``, a number ``-1`` the mask marks observed is refused, as in
    an integer array (it was read as a missing name, so ``fit`` trained on it as missing); the ``None`` beside it
    stays missing."""
    import numpy as np

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.8, 0.2], [0.1, 0.9]], ["a"]))
    observed = torch.ones(4, 2, dtype=torch.bool)
    for data in ({"a": np.array([0, 1, -1, 1], dtype=object), "b": np.array([1, 0, 0, 1], dtype=object)},
                 {"a": [0, 1, -1, 1], "b": [1, None, 0, 1]}):
        cols = bn.columns(data, observed)
        assert cols["a"].tolist()[2] == -1 and torch.isnan(cols["b"]).tolist() == [False, data["b"][1] is None,
                                                                                   False, False]
        with pytest.raises(DataError, match=r"-1\.0 in row 2 of the data, an entry the mask marks observed"):
            TraceEnum_ELBO(max_plate_nesting=1).loss(bn.model, bn.guide, data, observed)
