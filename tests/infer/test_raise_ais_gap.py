"""The noise of the RAISE/AIS gap behind ``LikelihoodBounds.reliable`` (review C, findings F2 and F6).

Before, ``gap_stderr`` combined RAISE's Monte Carlo error with AIS's only.  RAISE's log Z is high in expectation
over test points drawn from the model, not per point: its bias log p(v) - log p_fwd(v) varies between points, and
on a given test set its mean can be positive.  With many chains the Monte Carlo error shrinks and that bias alone
tripped the 3-sigma test (31 of 100 runs flagged with the exact log Z).  Now the error is the sd of the paired
per-point gaps over sqrt(N), combined with AIS's.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hybridpgm.infer import RAISE, estimate_log_z, log_likelihood_bounds
from hybridpgm.infer.log_z import LogZEstimate
from hybridpgm.infer.raise_ais import LikelihoodBounds, RAISEResult
from tests.energy.brute_force import random_rbm, single_thread  # noqa: F401


def test_gap_stderr_is_the_paired_per_point_spread_and_ais_error():
    """Equal weights within each point (RAISE's Monte Carlo error 0) but log Z_RAISE varying between points: the
    gap's error is sd_i(log Z_RAISE(v_i)) / sqrt(N) combined with AIS's (the old rule saw AIS's error only)."""
    log_z_raise = torch.tensor([10.0, 10.3, 9.9, 10.2], dtype=torch.float64)
    result = RAISEResult(log_likelihood=-log_z_raise, log_z=log_z_raise,
                         log_weights=torch.zeros(4, 3, dtype=torch.float64), num_steps=5)
    assert float(result.mc_stderr) == 0.0
    log_z = LogZEstimate.__new__(LogZEstimate)
    log_z.stderr, log_z.reliable = torch.tensor(0.02, dtype=torch.float64), True
    bounds = LikelihoodBounds(lower=-10.1, upper=0.0, estimate=-10.0, log_z=log_z, raise_result=result)
    spread = float(log_z_raise.std()) / 2.0
    assert bounds.raise_gap_stderr == pytest.approx(spread, abs=1e-12)
    assert bounds.gap_stderr == pytest.approx(math.hypot(spread, 0.02), abs=1e-12)


def _bounds(n: int, m: int) -> LikelihoodBounds:
    rbm = random_rbm(6, 3, seed=11)
    data = torch.bernoulli(torch.full((10, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    log_z = estimate_log_z(rbm, data, num_chains=10, num_steps=10, sample_sweeps=5, warn=False)
    torch.manual_seed(12)
    return log_likelihood_bounds(rbm, data[:n], data, log_z=log_z, raise_=RAISE(num_chains=m, num_steps=10))


def test_one_point_with_several_chains_falls_back_on_the_monte_carlo_error():
    bounds = _bounds(1, 4)
    mc = float(bounds.raise_result.mc_stderr)
    assert mc > 0 and bounds.raise_gap_stderr == mc
    assert bounds.gap_stderr == pytest.approx(math.hypot(mc, float(bounds.log_z.stderr)), abs=1e-15)


def test_one_point_with_one_chain_cannot_be_checked():
    """No estimate of RAISE's error at all: nan, and not reliable, instead of a silent 0 (old: the between-point
    fallback, 0 for one point, left AIS's error alone)."""
    bounds = _bounds(1, 1)
    assert math.isnan(bounds.lower_mc_stderr) and math.isnan(bounds.raise_gap_stderr)
    assert math.isnan(bounds.gap_stderr) and bounds.reliable is False


def test_no_points_give_nan_without_warnings():
    """Old: ``point_stderr`` took the std of an empty tensor, with torch's "degrees of freedom" warning.  Bounds of
    no points are refused by ``log_likelihood_bounds`` now (test_raise_ais_empty.py); built by hand from RAISE's
    empty result they are nan, still without warnings."""
    rbm = random_rbm(6, 3, seed=11)
    log_z = estimate_log_z(rbm, num_chains=4, num_steps=4, sample_sweeps=1, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = RAISE(num_chains=2, num_steps=3)(rbm, torch.zeros(0, 6, dtype=torch.float64))
        assert result.point_stderr.shape == (0,)
        assert math.isnan(float(result.mc_stderr))
        bounds = LikelihoodBounds(lower=math.nan, upper=math.nan, estimate=math.nan, log_z=log_z, raise_result=result)
        assert math.isnan(bounds.gap_stderr) and bounds.reliable is False
        assert math.isnan(bounds.to_dict()["raise_gap_stderr"])
