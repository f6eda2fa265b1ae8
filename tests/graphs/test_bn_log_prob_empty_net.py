"""``BayesNet.log_prob`` of a network without nodes (audit of empty inputs, finding 2).

Before, ``sum(...)`` over no nodes gave the Python int ``0`` for every input: ``log_prob({})``,
``log_prob(torch.zeros(3, 0))`` and ``log_prob(torch.zeros(0, 0))`` all returned ``0``, not a tensor, and not of
the rows' shape.  Every row of such a network has probability 1: the answer is zeros of the rows' shape in the
network's dtype, as ``log_evidence({})`` and ``map(return_log_prob=True)`` answer there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet


@pytest.mark.parametrize("values, shape", [
    (torch.zeros(3, 0, dtype=torch.long), (3,)),
    (torch.zeros(0, 0), (0,)),
    (np.zeros((2, 0)), (2,)),
    ([[], [], [], []], (4,)),
    ([], (0,)),
    ({}, ()),
    (None, ()),
])
def test_log_prob_of_an_empty_network_is_zeros_of_the_rows_shape(values, shape):
    bn = BayesNet()
    out = bn.log_prob(values)
    assert isinstance(out, torch.Tensor)
    assert out.shape == shape and out.dtype == bn.dtype and out.device == bn.device
    assert torch.equal(out, torch.zeros(shape, dtype=bn.dtype))
    assert bn.log_evidence({}).shape == () and bn.log_evidence({}).dtype == out.dtype  # the 0-d answer alike


def test_a_data_frame_of_rows_and_no_column_gives_one_zero_per_row():
    pd = pytest.importorskip("pandas")
    out = BayesNet().log_prob(pd.DataFrame(index=range(3)))
    assert torch.equal(out, torch.zeros(3))


@pytest.mark.parametrize("values, match", [
    (torch.zeros(3), r"tensor data must be \[N, 0\] real numbers .* got shape \(3,\)"),
    (torch.zeros(3, 1), r"got shape \(3, 1\)"),
    ({"x": torch.tensor([1])}, "data has column 'x', which is not a node"),
])
def test_data_an_empty_network_cannot_hold_is_still_refused(values, match):
    with pytest.raises(DataError, match=match):
        BayesNet().log_prob(values)


def test_inputs_an_empty_network_has_none_of_are_refused():
    with pytest.raises(DataError, match=r"context inputs \[\]"):
        BayesNet().log_prob(torch.zeros(3, 0), context=torch.zeros(3, 1))
