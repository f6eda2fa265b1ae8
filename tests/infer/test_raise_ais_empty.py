"""Test points of no rows for RAISE and :func:`log_likelihood_bounds` (audit of empty inputs, finding 1).

Before, ``log_likelihood_bounds(rbm, v[:0])`` ran the whole multi-start AIS (100 chains x 10000 steps by default)
and RAISE, then returned ``LikelihoodBounds(lower=nan, upper=nan, estimate=nan)`` without a word, and
``RAISEResult.test_set_stderr`` of no points was 0.0, an exact error for a mean that does not exist.
"""

from __future__ import annotations

import math

import pytest
import torch

import hybridpgm.infer.raise_ais as raise_ais
from hybridpgm.errors import DataError
from hybridpgm.infer import RAISE, RAISEResult, log_likelihood_bounds
from tests.energy.brute_force import random_rbm, single_thread  # noqa: F401


@pytest.mark.parametrize("shape", [(0, 4), (2, 0, 4)])
def test_bounds_of_no_test_points_are_refused_before_any_annealing(monkeypatch, shape):
    rbm = random_rbm(4, 2, seed=3)

    def no_annealing(*args, **kwargs):
        raise AssertionError("the annealing ran for no test points")

    monkeypatch.setattr(raise_ais, "estimate_log_z", no_annealing)
    monkeypatch.setattr(raise_ais.RAISE, "__call__", no_annealing)
    v = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(DataError, match=rf"'v' have shape {re_shape(shape)}.*mean log-likelihood of no test points"):
        log_likelihood_bounds(rbm, v, num_chains=2, num_steps=2, sample_sweeps=1)


def re_shape(shape: tuple) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_one_test_point_still_gives_finite_bounds():
    """The refusal is for no rows only: one point (a batch shape ``()`` or ``1``) still runs."""
    rbm = random_rbm(4, 2, seed=3)
    v = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    torch.manual_seed(0)
    bounds = log_likelihood_bounds(rbm, v, num_chains=2, num_steps=3, sample_sweeps=1, warn=False,
                                   raise_=RAISE(num_chains=2, num_steps=3))
    assert math.isfinite(bounds.lower) and math.isfinite(bounds.estimate) and bounds.raise_result.log_z.shape == ()


def test_raise_of_no_points_answers_empty_and_its_test_set_stderr_is_nan():
    """RAISE itself keeps answering per-row results of batch shape ``(0,)``; the spread between no points is nan,
    as ``mc_stderr`` is (old: 0.0), and the deprecated ``stderr`` follows it."""
    rbm = random_rbm(4, 2, seed=3)
    result = RAISE(num_chains=2, num_steps=3)(rbm, torch.zeros(0, 4, dtype=torch.float64))
    assert result.log_likelihood.shape == (0,) and result.log_weights.shape == (0, 2)
    assert math.isnan(float(result.test_set_stderr)) and math.isnan(float(result.mc_stderr))
    assert result.test_set_stderr.shape == () and result.test_set_stderr.dtype == torch.float64


def test_test_set_stderr_of_one_and_two_points_is_unchanged():
    one = RAISEResult(log_likelihood=torch.tensor([-3.0], dtype=torch.float64), log_z=torch.tensor([3.0]),
                      log_weights=torch.zeros(1, 2), num_steps=1)
    assert float(one.test_set_stderr) == 0.0
    two = RAISEResult(log_likelihood=torch.tensor([-3.0, -1.0], dtype=torch.float64), log_z=torch.zeros(2),
                      log_weights=torch.zeros(2, 2), num_steps=1)
    assert float(two.test_set_stderr) == pytest.approx(math.sqrt(2.0) / math.sqrt(2.0), abs=1e-15)


def test_raise_result_is_the_same_class_from_either_module():
    """The class moved to ``hybridpgm.infer.raise_result``; the old import path names the same object."""
    from hybridpgm.infer.raise_result import RAISEResult as moved

    assert raise_ais.RAISEResult is moved is RAISEResult
