"""``resample_indices`` refuses NaN and +inf log-weights (hybridpgm/diagnostics/importance_resampling.py), with the
check :func:`~hybridpgm.diagnostics.from_importance` shares.

Found by an audit (ESTIM, session 38): for the log-weights ``[0, nan, 1, 2]`` or ``[0, inf, 1, inf]`` the
systematic pick (the default) returned ``[3, 3, 3, 3]`` silently, and the multinomial one raised torch's raw
``RuntimeError: invalid multinomial distribution``; the docstring says "finite, or -inf"."""

from __future__ import annotations

import re

import pytest
import torch

from hybridpgm.diagnostics import from_importance
from hybridpgm.diagnostics.importance_resampling import resample_indices
from hybridpgm.errors import DataError

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
@pytest.mark.parametrize("values, count, where", [([0.0, NAN, 1.0, 2.0], 1, [[1]]),
                                                  ([0.0, INF, 1.0, INF], 2, [[1], [3]]),
                                                  ([-INF, NAN, -INF, -INF], 1, [[1]])])
def test_nan_or_plus_inf_log_weights_are_a_data_error_naming_their_positions(method, values, count, where):
    """Fails before: the systematic pick returned indices, the multinomial one raised a raw RuntimeError."""
    lw = torch.tensor(values)
    match = rf"resample_indices log_weights hold {count} NaN or \+inf value\(s\) \(at {re.escape(str(where))}\)"
    with pytest.raises(DataError, match=match):
        resample_indices(lw, method, generator=torch.Generator().manual_seed(0))
    columns = torch.stack([torch.zeros(4), lw], dim=1)  # K x N: the bad column is column 1
    where_2d = [[row, 1] for (row,) in where]
    with pytest.raises(DataError, match=re.escape(f"(at {where_2d})")):
        resample_indices(columns, method, generator=torch.Generator().manual_seed(0))


def test_from_importance_refuses_them_as_before():
    """Guard (passes on the old code too): the check moved, :func:`from_importance` still names the positions,
    with or without draws to resample."""
    lw = torch.tensor([[0.0, 1.0], [INF, 2.0], [1.0, NAN]])
    match = r"^log_weights hold 2 NaN or \+inf value\(s\) \(at \[\[1, 0\], \[2, 1\]\]\)"
    for samples in (None, {"x": torch.zeros(3, 2)}):
        with pytest.raises(DataError, match=match):
            from_importance(lw, samples)


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_finite_and_minus_inf_log_weights_pick_as_before(method):
    """Guard: a zero weight (-inf) is allowed and never picked; one column as a 1-D tensor picks as the column of a
    ``K x 1`` tensor."""
    lw = torch.tensor([0.0, -INF, 1.0, 2.0])
    one = resample_indices(lw, method, generator=torch.Generator().manual_seed(5))
    column = resample_indices(lw[:, None], method, generator=torch.Generator().manual_seed(5))
    assert one.shape == (4,) and torch.equal(one, column[:, 0]) and not bool((one == 1).any())
