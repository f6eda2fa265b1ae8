"""The Monte Carlo error of RAISE and the reliability of the AIS/RAISE sandwich (audit18 finding 1).

Before, ``LikelihoodBounds.reliable`` tolerated ``lower > upper`` by ``3 * RAISEResult.stderr``, and that stderr was
the spread of log p(v) *between the test points* / sqrt(N), about 100x RAISE's Monte Carlo noise: a sandwich
inverted by 1.16 nats counted as reliable.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from scipy.stats import chi2

from hybridpgm.energy import RBM
from hybridpgm.infer import RAISE, estimate_log_z, log_likelihood_bounds
from hybridpgm.infer.raise_ais import RAISEResult
from tests.energy.brute_force import random_rbm, single_thread  # noqa: F401


def _audit_rbm(scale: float) -> tuple[RBM, torch.Tensor]:
    """The audit's 8x4 RBM (exact log p by enumeration) and 20 test points drawn from it."""
    torch.manual_seed(0)
    rbm = RBM(8, 4).double()
    with torch.no_grad():
        rbm.weight.normal_(0, scale)
        rbm.visible_bias.normal_(0, 1)
        rbm.hidden_bias.normal_(0, 1)
    torch.manual_seed(1)
    return rbm, rbm.sample(20, steps=200)


def test_an_inverted_sandwich_beyond_the_monte_carlo_noise_is_unreliable():
    """The audit's construction: an AIS log Z 1.2 nats too high (an overshoot the starts did not catch) puts the
    AIS "upper" estimate 1.16 nats below RAISE's "lower" one, about 60 standard errors of their gap.  Before, the
    tolerance was 3 x 0.44 nats (the test points' spread) and the pair counted as reliable."""
    rbm, v = _audit_rbm(2.5)
    torch.manual_seed(2)
    log_z = estimate_log_z(rbm, v, num_chains=50, num_steps=300, schedule="linear", sample_sweeps=50)
    assert log_z.reliable and abs(float(log_z.log_z - rbm.log_partition())) < 3 * float(log_z.stderr)
    raise_ = RAISE(num_chains=20, num_steps=300, schedule="linear")
    torch.manual_seed(3)
    honest = log_likelihood_bounds(rbm, v, v, log_z=log_z, raise_=raise_)
    assert honest.reliable  # the same RAISE run against the right log Z: no false alarm
    log_z.log_z = log_z.log_z + 1.2
    torch.manual_seed(3)
    bounds = log_likelihood_bounds(rbm, v, v, log_z=log_z, raise_=raise_)
    print(f"lower {bounds.lower:.4f} upper {bounds.upper:.4f} reliable {bounds.reliable}")
    assert bounds.lower - bounds.upper > 1.0
    assert not bounds.reliable
    # the rule: lower - estimate against 3 standard errors of that gap, the paired per-point spread of RAISE's
    # log Z over sqrt(N) (its Monte Carlo noise and the spread of its bias) and AIS's error combined
    spread = float(bounds.raise_result.log_z.std()) / math.sqrt(v.shape[0])
    assert bounds.gap_stderr == pytest.approx(math.hypot(spread, float(log_z.stderr)))
    assert bounds.gap_stderr < 0.05 < 0.4 < float(bounds.raise_result.test_set_stderr)


def test_mc_stderr_matches_the_seed_to_seed_spread_of_the_lower_estimate():
    """200 independent RAISE replicates of the same 20 test points (one call on the points repeated 200 times:
    the chains of each row are independent).  With S replicates of a normal estimate of sd sigma, the sample sd s
    has (S-1) s^2 / sigma^2 ~ chi2(S-1); if the reported error is calibrated (sigma = rms reported se) the ratio
    rms se / s lies in [sqrt((S-1)/chi2_hi), sqrt((S-1)/chi2_lo)] with probability 1 - 1e-4 (for S = 200 about
    [0.84, 1.20]).  The between-point stderr (0.35) is ~20x outside it, which is why it could not be the
    tolerance of the sandwich."""
    rbm, v = _audit_rbm(1.5)
    s_rep, alpha = 200, 1e-4
    torch.manual_seed(4)
    result = RAISE(num_chains=5, num_steps=30, schedule="linear")(rbm, v.expand(s_rep, -1, -1), data=v)
    reps = [RAISEResult(log_likelihood=result.log_likelihood[s], log_z=result.log_z[s],
                        log_weights=result.log_weights[s], num_steps=result.num_steps) for s in range(s_rep)]
    lowers = torch.stack([r.log_likelihood.mean() for r in reps])
    rms_se = float(torch.stack([r.mc_stderr for r in reps]).pow(2).mean().sqrt())
    sd = float(lowers.std())
    lo = math.sqrt((s_rep - 1) / chi2.ppf(1 - alpha / 2, s_rep - 1))
    hi = math.sqrt((s_rep - 1) / chi2.ppf(alpha / 2, s_rep - 1))
    test_set = float(reps[0].test_set_stderr)
    print(f"emp sd {sd:.5f}, rms mc_stderr {rms_se:.5f}, ratio {rms_se / sd:.3f} in [{lo:.3f}, {hi:.3f}]; "
          f"test_set_stderr {test_set:.3f}")
    assert lo <= rms_se / sd <= hi
    assert not lo <= test_set / sd <= hi


def test_point_stderr_is_the_delta_method_error_of_each_log_mean_exp():
    """Weights (1, 3): w / mean = (0.5, 1.5), sample sd 1/sqrt(2), se 1/2; equal weights: se 0.  The mean over
    the two points has se sqrt(0.5^2 + 0^2) / 2."""
    log_w = torch.log(torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64)) - 7.0
    result = RAISEResult(log_likelihood=torch.tensor([-1.0, -5.0], dtype=torch.float64),
                         log_z=torch.zeros(2, dtype=torch.float64), log_weights=log_w, num_steps=3)
    torch.testing.assert_close(result.point_stderr, torch.tensor([0.5, 0.0], dtype=torch.float64))
    assert float(result.mc_stderr) == pytest.approx(0.25, abs=1e-12)
    assert float(result.test_set_stderr) == pytest.approx(math.sqrt(8.0) / math.sqrt(2.0), abs=1e-12)


def test_one_chain_per_point_falls_back_on_the_larger_test_set_stderr():
    """One chain cannot measure its own noise: ``mc_stderr`` is nan and the sandwich uses the test points'
    spread, an upper bound of the Monte Carlo error in expectation (RAISEResult docstring)."""
    rbm = random_rbm(6, 3, seed=11)
    data = torch.bernoulli(torch.full((10, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    log_z = estimate_log_z(rbm, data, num_chains=10, num_steps=10, sample_sweeps=5, warn=False)
    torch.manual_seed(12)
    bounds = log_likelihood_bounds(rbm, data, data, log_z=log_z, raise_=RAISE(num_chains=1, num_steps=10))
    assert math.isnan(float(bounds.raise_result.mc_stderr)) and bool(bounds.raise_result.point_stderr.isnan().all())
    assert bounds.lower_mc_stderr == float(bounds.raise_result.test_set_stderr) > 0
    assert bounds.reliable == (log_z.reliable and bounds.lower - bounds.estimate <= 3 * bounds.gap_stderr)


def test_the_old_names_of_the_between_point_stderr_warn():
    """``RAISEResult.stderr`` and ``to_dict()["lower_stderr"]`` are kept one release under their honest name
    ``test_set_stderr``, with a FutureWarning; the JSON report carries every key without warning."""
    rbm = random_rbm(5, 3, seed=6)
    log_z = estimate_log_z(rbm, num_chains=4, num_steps=3, sample_sweeps=2, warn=False)
    torch.manual_seed(0)
    bounds = log_likelihood_bounds(rbm, torch.ones(3, 5), log_z=log_z, raise_=RAISE(num_chains=2, num_steps=3))
    with pytest.warns(FutureWarning, match="test_set_stderr") as caught:
        old = bounds.raise_result.stderr
    assert caught[0].filename == __file__
    assert torch.equal(old, bounds.raise_result.test_set_stderr)
    report = bounds.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = json.dumps(report)
        assert report["test_set_stderr"] == float(old) and report["lower_mc_stderr"] == bounds.lower_mc_stderr
        assert report["upper_mc_stderr"] == float(log_z.stderr) and report["gap_stderr"] == bounds.gap_stderr
    assert json.loads(text)["lower_stderr"] == float(old)
    with pytest.warns(FutureWarning, match=r"\['lower_stderr'\] is renamed 'test_set_stderr'"):
        assert report["lower_stderr"] == float(old)
    with pytest.warns(FutureWarning, match="lower_mc_stderr"):
        assert report.get("lower_stderr") == float(old)
