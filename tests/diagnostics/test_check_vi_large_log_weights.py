"""PSIS k-hat does not depend on the scale of the log-weights: only their spread within a row matters.

Before: a row counted as constant when its spread was at most sqrt(eps32) * max|log w|, 10 nats at
|log w| = 3e4, so heavy-tailed rows there got k-hat -inf and check_vi called a bad guide "good"."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics import check_vi, pareto_khat


def _heavy_tailed_log_weights():
    """Three rows of 1000 Pareto(k = 0.9) log-weights spanning 6-7 nats, on a grid of 2^-20 so that the
    shifts below are exact in float64 (the comparisons can then be exact too)."""
    rng = np.random.default_rng(0)
    log_w = np.log(rng.pareto(1 / 0.9, size=(3, 1000)) + 1.0)
    return np.round(log_w * 2.0**20) / 2.0**20


@pytest.mark.parametrize("shift", [-3e4, -1e5, 3e4])
def test_a_constant_added_to_the_log_weights_changes_no_khat(shift):
    log_w = _heavy_tailed_log_weights()
    smoothed, khat = pareto_khat(log_w)
    assert np.all(khat > 0.7) and np.all(np.isfinite(khat))
    shifted_smoothed, shifted_khat = pareto_khat(log_w + shift)
    np.testing.assert_array_equal(shifted_khat, khat)
    # the smoothed tail is fitted below the row's largest weight and shifted back: equal up to that rounding
    np.testing.assert_allclose(shifted_smoothed - shift, smoothed, rtol=0, atol=1e-10)


@pytest.mark.parametrize("level", [-2.5, 1e3, -3e4, -1e5])
def test_a_constant_row_with_float32_rounding_is_still_constant(level):
    """A constant log-weight off by up to four units in the last place of float32 (the rounding of a
    computed log p - log q) is still a constant row: k-hat -inf, the weights unchanged."""
    rng = np.random.default_rng(1)
    ulps = rng.integers(-4, 5, size=(2, 500)).astype(np.float32)
    log_w = np.float32(level) + ulps * np.spacing(np.float32(abs(level)))
    assert log_w.dtype == np.float32 and np.all(np.ptp(log_w, axis=-1) > 0)
    smoothed, khat = pareto_khat(torch.as_tensor(log_w))
    assert khat.tolist() == [-np.inf, -np.inf]
    np.testing.assert_array_equal(smoothed, log_w.astype(np.float64))


def _narrow_guide_with_large_log_weights():
    """z_n ~ N(0, 1), D = 5000 observations x_nd ~ N(z_n, 1e-3); the guide has the posterior's mean and 0.3
    times its sd, so the weights' tail has k = 1 - 0.3^2 = 0.91, and log w is about 2.7e4."""
    num_points, dims, sigma, width = 3, 5000, 1e-3, 0.3
    gen = torch.Generator().manual_seed(0)
    z_true = torch.randn(num_points, generator=gen, dtype=torch.float64)
    x = z_true[:, None] + sigma * torch.randn(num_points, dims, generator=gen, dtype=torch.float64)
    precision = 1 + dims / sigma**2
    post_mean, post_sd = (x.sum(-1) / sigma**2) / precision, precision**-0.5

    def model(x):
        with pyro.plate("data", num_points):
            z = pyro.sample("z", dist.Normal(torch.zeros(num_points, dtype=torch.float64), 1.0))
            pyro.sample("x", dist.Normal(z[..., None], sigma).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", num_points):
            pyro.sample("z", dist.Normal(post_mean, width * post_sd))

    return model, guide, x


def test_check_vi_flags_a_narrow_guide_whose_log_weights_are_large():
    model, guide, x = _narrow_guide_with_large_log_weights()
    pyro.set_rng_seed(1)
    result = check_vi(model, guide, x, num_samples=1000)
    assert np.all(np.abs(result.log_likelihood) > 1e4)  # the regime where the old tolerance spanned nats
    assert np.all(np.isfinite(result.khat)) and result.verdict == "bad"
