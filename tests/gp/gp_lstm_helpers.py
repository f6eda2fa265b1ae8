"""Shared helpers of the GP-LSTM tests (tests/gp/test_gp_lstm*.py): the warnings that fail them, small windows
of a synthetic series and a small semi-stochastic objective."""

from __future__ import annotations

import torch

from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.gp import GPLSTM, SemiStochasticObjective

#: the test files' ``pytest.mark.filterwarnings``: a UserWarning or RuntimeWarning not ignored here fails the test (a
#: later filter wins: the ignores, third-party warnings seen in these files, come after the errors)
GP_LSTM_WARNINGS = (
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # torch, at the test's float() of a loss
    "ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning",
)


def windows(n=120, window=8, seed=0):
    """``n`` windows ``[n, window, 1]`` of a seeded synthetic series (period 9) and their next values ``[n]``."""
    z = synthetic_series(n + window, period=9.0, noise=0.1, seed=seed).float()
    return make_windows(z, window)


def small_objective():
    """The semi-stochastic objective of a GP-LSTM of hidden size 3 on 30 seeded random windows of 6 steps."""
    x = torch.rand(30, 6, 1, generator=torch.Generator().manual_seed(0))
    return SemiStochasticObjective(GPLSTM(x, x[:, -1, 0], hidden_size=3))
