import re
import warnings

import numpy as np
import pyro
import pytest
import torch

from hybridpgm.diagnostics import check_vi, pareto_khat
from hybridpgm.errors import ConfigError
from tests.diagnostics.conjugate import exact_log_likelihood, guide_with_width, model

X = torch.linspace(-2.0, 2.0, 8, dtype=torch.float64)


def test_exact_posterior_guide_is_good_and_its_estimate_exact():
    pyro.set_rng_seed(0)
    result = check_vi(model, guide_with_width(1.0), X, num_samples=1000)
    assert result.khat.shape == (8,) and result.verdict == "good"
    assert np.all(result.khat < 0.5)
    np.testing.assert_allclose(result.log_likelihood, exact_log_likelihood(X).numpy(), atol=1e-8)
    assert result.counts == {"good": 8, "bad": 0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_too_narrow_guide_is_flagged(seed):
    # a guide with 0.2x the posterior's width gives weights with a Pareto tail of shape about
    # 1 - 0.2**2 = 0.96; single k-hats scatter (about +-0.15 at 4000 draws), so judge the median
    # over 32 points
    pyro.set_rng_seed(seed)
    result = check_vi(model, guide_with_width(0.2), torch.linspace(-2.0, 2.0, 32, dtype=torch.float64),
                      num_samples=4000)
    assert np.median(result.khat) > 0.7 and result.verdict == "bad"
    assert result.counts["bad"] > 16 and "bad" in result.summary()


def test_slightly_wide_guide_is_good_and_accurate():
    pyro.set_rng_seed(0)
    result = check_vi(model, guide_with_width(1.3), X, num_samples=2000)
    assert result.verdict == "good"
    np.testing.assert_allclose(result.log_likelihood, exact_log_likelihood(X).numpy(), atol=0.05)


def test_too_few_samples():
    with pytest.raises(ConfigError, match="num_samples"):
        check_vi(model, guide_with_width(1.0), X, num_samples=5)


@pytest.mark.parametrize("seed", range(5))
def test_exact_guide_is_never_bad_in_float32(seed):
    """With the exact posterior as guide every importance ratio is the same number, up to float32
    rounding; the rounding ties once made ArviZ report k-hat = inf ("bad") at some points."""
    pyro.set_rng_seed(seed)
    x = 1.5 * torch.randn(32, generator=torch.Generator().manual_seed(seed))
    result = check_vi(model, guide_with_width(1.0), x, num_samples=1000)
    assert result.counts["bad"] == 0
    assert np.all(result.khat < 0.5) and not np.any(np.isposinf(result.khat))
    np.testing.assert_allclose(result.log_likelihood, exact_log_likelihood(x).numpy(), atol=1e-4)


def test_pareto_khat_agrees_with_arviz_on_a_heavy_tail():
    """Away from constant rows the k-hat is ArviZ's, and the smoothed weights keep the raw body."""
    from hybridpgm.diagnostics import pareto_khat

    rng = np.random.default_rng(0)
    log_w = rng.standard_t(3, size=(4, 2000)) + 5.0
    smoothed, khat = pareto_khat(log_w)
    assert np.all((khat > 0.7) & np.isfinite(khat))  # a t(3) log-weight has an exponential-type tail
    body = log_w < np.quantile(log_w, 0.5, axis=-1, keepdims=True)
    np.testing.assert_allclose(smoothed[body], log_w[body], rtol=1e-10)


def test_pareto_khat_treats_minus_inf_as_a_zero_weight():
    """A zero weight below the tail changes neither k-hat nor the other smoothed weights (it used to make the
    row look constant: k-hat -inf, an exact guide)."""
    from hybridpgm.diagnostics import pareto_khat

    rng = np.random.default_rng(0)
    log_w = rng.standard_normal((2, 200)) * np.array([[0.5], [2.0]])
    smoothed, khat = pareto_khat(log_w)
    zeroed = log_w.copy()
    lowest = zeroed.argmin(-1)
    zeroed[[0, 1], lowest] = -np.inf
    smoothed0, khat0 = pareto_khat(zeroed)
    assert np.all(np.isfinite(khat0))
    np.testing.assert_allclose(khat0, khat, rtol=1e-12)
    assert np.isneginf(smoothed0[[0, 1], lowest]).all()
    keep = np.isfinite(zeroed)
    np.testing.assert_allclose(smoothed0[keep], smoothed[keep], rtol=1e-12)


def test_pareto_khat_equal_weights_with_zeros_are_constant():
    from hybridpgm.diagnostics import pareto_khat

    log_w = np.full((1, 50), -3.0)
    log_w[0, 7] = -np.inf
    smoothed, khat = pareto_khat(log_w)
    assert khat.tolist() == [-np.inf]
    np.testing.assert_array_equal(smoothed, log_w)


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN or \\+inf in row\\(s\\) \\[1\\]"),
                                        (np.inf, "NaN or \\+inf in row\\(s\\) \\[1\\]")])
def test_pareto_khat_refuses_nan_and_plus_inf(bad, match):
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.errors import DataError

    log_w = np.zeros((3, 40))
    log_w[1, 4] = bad
    with pytest.raises(DataError, match=match):
        pareto_khat(log_w)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (2, 29)])
def test_pareto_khat_names_too_few_draws_before_their_values(shape):
    """Before, an empty row was reported as 'every log-weight is -inf'."""
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 30 log-weights per row.*" + re.escape(f"got shape {shape}")):
        pareto_khat(np.zeros(shape))


def test_pareto_khat_refuses_a_row_of_zero_weights():
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.errors import DataError

    log_w = np.zeros((2, 40))
    log_w[0] = -np.inf
    with pytest.raises(DataError, match="all weights zero\\) in row\\(s\\) \\[0\\]"):
        pareto_khat(log_w)


@pytest.mark.parametrize("kwargs, match", [({"num_samples": 100.5}, "num_samples must be a non-negative integer"),
                                           ({"chunk_size": 0}, "chunk_size must be at least 1"),
                                           ({"chunk_size": 2.5}, "chunk_size must be a non-negative integer")])
def test_check_vi_refuses_counts_that_are_not_integers(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        check_vi(model, guide_with_width(1.0), torch.zeros(3), **kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_psis_needs_30_draws_per_row_under_either_arviz(seed):
    """ArviZ 1.x fits the tail to floor(S/5) draws: below 25 draws check_vi and pareto_khat passed its raw
    ValueError through, and from 25 to 29 they reported k-hat = NaN (ArviZ 0.x answered)."""
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.diagnostics.check_vi import PSIS_MIN_DRAWS

    assert PSIS_MIN_DRAWS == 30
    rng = np.random.default_rng(seed)
    for draws in (24, 29):
        with pytest.raises(ConfigError, match=rf"at least 30 log-weights per row .* got shape \(4, {draws}\)"):
            pareto_khat(rng.standard_normal((4, draws)))
    smoothed, khat = pareto_khat(rng.standard_normal((4, 30)))
    assert smoothed.shape == (4, 30) and np.isfinite(khat).all()
    with pytest.raises(ConfigError, match="num_samples >= 30 for a Pareto fit, got 29"):
        check_vi(model, guide_with_width(1.0), X, num_samples=29)
    assert np.isfinite(check_vi(model, guide_with_width(1.3), X, num_samples=30).khat).all()  # an inexact guide


def test_check_vi_refuses_a_guide_with_global_latents():
    """A Bayesian regressor's weights are shared by every point: before, the vectorized pass failed inside
    the network with torch's 't() expects a tensor with <= 2 dimensions'."""
    from pyro.infer.autoguide import AutoNormal

    from hybridpgm.bayesian_nn import BayesianRegressor
    from hybridpgm.errors import ObjectiveError

    x, y = torch.randn(16, 2), torch.randn(16)
    with pyro.get_param_store().scope():
        regressor = BayesianRegressor(torch.nn.Linear(2, 1), num_data=16)
        guide = AutoNormal(regressor)
        with pytest.raises(ObjectiveError, match=r"the guide samples \['net.weight', 'net.bias'\] outside every "
                                                 r"plate.*from_pyro_svi"):
            check_vi(regressor, guide, x, y, num_samples=40)


def _psis_mean(smoothed: np.ndarray) -> np.ndarray:
    """The PSIS estimate of E_q[w] per row: the mean of the smoothed weights."""
    return np.exp(np.logaddexp.reduce(smoothed, axis=-1) - np.log(smoothed.shape[-1]))


@pytest.mark.parametrize("sd", [1000.0, 3000.0])
def test_a_row_whose_tail_underflows_is_bad_under_either_arviz(sd):
    """Log-weights spanning thousands of nats leave ArviZ 1.x's tail all zeros but one after exponentiation: it
    answered k-hat = NaN, which pareto_khat passed on and VICheck counted as nothing (0 bad for a terrible
    guide). ArviZ 0.x answers a large or infinite k-hat."""
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.diagnostics.check_vi import VICheck

    rng = np.random.default_rng(0)
    log_w = np.stack([rng.standard_normal(100), rng.normal(0.0, sd, size=100)])
    smoothed, khat = pareto_khat(log_w)
    assert not np.isnan(khat).any() and khat[1] >= 0.7
    result = VICheck(khat=khat, log_likelihood=np.zeros(2), num_samples=100)
    assert sum(result.counts.values()) == 2 and result.counts["bad"] >= 1 and result.verdict == "bad"


def test_one_weight_above_equal_ones_is_plus_inf_under_either_arviz():
    """99 equal weights and one larger: ArviZ 0.x gives +inf (a tail too short to fit), ArviZ 1.x gave NaN."""
    from hybridpgm.diagnostics import pareto_khat

    log_w = np.r_[np.zeros(99), 5.0]
    smoothed, khat = pareto_khat(log_w)
    assert khat.shape == () and float(khat) == np.inf
    np.testing.assert_array_equal(smoothed, log_w)  # not smoothed: there is no fit


def test_a_tail_of_equal_weights_is_plus_inf_under_either_arviz():
    """The 40 largest weights equal, above a lower body: ArviZ 1.x raised a bare ValueError ("All tail values
    are the same"), ArviZ 0.x answered +inf."""
    from hybridpgm.diagnostics import pareto_khat

    log_w = np.r_[np.zeros(150), np.ones(50)]
    smoothed, khat = pareto_khat(np.stack([log_w, log_w[::-1]]))
    assert khat.tolist() == [np.inf, np.inf]
    np.testing.assert_array_equal(smoothed[0], log_w)


def test_vicheck_counts_every_point_and_a_nan_k_hat_as_bad():
    from hybridpgm.diagnostics.check_vi import VICheck

    result = VICheck(khat=np.array([0.1, np.nan, 0.6]), log_likelihood=np.zeros(3), num_samples=100)
    assert result.counts == {"good": 1, "bad": 2}  # 0.6 > 0.5, the threshold at S = 100
    assert result.verdict == "bad"
    assert "2 bad (1 of them <= 0.7: more draws may help; 1 of them NaN)" in result.summary()
    assert "max 0.600" in result.summary()


def test_check_vi_flags_a_prior_guide_on_784_precise_pixels():
    """A closer-to-life case of the NaN k-hat: the guide is the prior and the decoder's noise is 0.1 on 784
    pixels, so a point's log-weights span thousands of nats. Under ArviZ 1.x check_vi reported 0 bad."""
    import pyro.distributions as dist

    g = torch.Generator().manual_seed(0)
    weight = 0.3 * torch.randn(2, 784, generator=g)
    x = torch.randn(4, 2, generator=g) @ weight + 0.1 * torch.randn(4, 784, generator=g)

    def pixel_model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ weight, 0.1).to_event(1), obs=x)

    def prior_guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))

    pyro.set_rng_seed(0)
    result = check_vi(pixel_model, prior_guide, x, num_samples=200)
    assert not np.isnan(result.khat).any()
    assert result.counts == {"good": 0, "bad": 4} and result.verdict == "bad"


def zero_weight_rows(cut: float, scale: float, rows: int = 300, draws: int = 200) -> np.ndarray:
    """Log-weights of q = U(0, 1) for w(z) = scale * z on z < cut, else 0 (a zero weight), from the audit's
    khat_neginf_bias.py: E_q[w] = scale * cut**2 / 2."""
    z = np.random.default_rng(0).uniform(size=(rows, draws))
    with np.errstate(divide="ignore"):
        return np.where(z < cut, np.log(scale * z), -np.inf)


def test_pareto_khat_does_not_smooth_zero_weights_into_mass():
    """About 20 of 200 weights are positive, fewer than the 40 of the Pareto tail, so the tail and its
    threshold held zero weights: ArviZ 0.x's smoothing gave them mass (a PSIS mean of 0.223 where E_q[w] = 0.1)
    with 'good' k-hats, ArviZ 1.x answered NaN k-hats. Such rows are now +inf and left unsmoothed."""
    from hybridpgm.diagnostics import pareto_khat

    log_w = zero_weight_rows(0.1, 20.0)
    smoothed, khat = pareto_khat(log_w)
    estimate = _psis_mean(smoothed)
    trusted = khat < 0.7  # a row's estimate must be right unless its k-hat flags it
    assert not np.isnan(khat).any()
    if trusted.any():
        assert abs(estimate[trusted].mean() - 0.1) < 3 * estimate[trusted].std() / np.sqrt(trusted.sum())
    assert abs(estimate.mean() - 0.1) < 3 * estimate.std() / np.sqrt(len(estimate))
    assert np.isposinf(khat).all()  # the rule: at most ceil(min(S/5, 3 sqrt S)) = 40 positive weights
    np.testing.assert_array_equal(smoothed, log_w)


def test_pareto_khat_smooths_rows_with_zeros_in_the_body_as_arviz_does():
    """About 100 of 200 weights positive: the tail and threshold are positive and the zeros lie in the body,
    so the k-hat is ArviZ's and the zeros stay zeros."""
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.diagnostics.check_vi import _arviz_psislw

    log_w = zero_weight_rows(0.5, 4.0, rows=20)  # E_q[w] = 0.5
    smoothed, khat = pareto_khat(log_w)
    assert np.isfinite(khat).all() and (khat < 0.5).all()  # bounded weights
    np.testing.assert_allclose(khat, np.asarray(_arviz_psislw(log_w)[1]), rtol=1e-10)
    np.testing.assert_array_equal(np.isneginf(smoothed), np.isneginf(log_w))
    assert abs(_psis_mean(smoothed).mean() - 0.5) < 0.05


def test_pareto_khat_of_bfloat16_equals_that_of_the_same_values_in_float32():
    """Before: torch's raw TypeError 'Got unsupported ScalarType BFloat16'."""
    from hybridpgm.diagnostics import pareto_khat

    log_w = torch.randn(3, 200, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    smoothed, khat = pareto_khat(log_w)
    expected_smoothed, expected_khat = pareto_khat(log_w.float())
    np.testing.assert_array_equal(khat, expected_khat)
    np.testing.assert_array_equal(smoothed, expected_smoothed)


def test_check_vi_gives_one_khat_per_row_of_two_models_over_the_same_rows():
    """Two VAEs over the same three rows (plates "v1/data" and "v2/data"): three k-hats, PSIS of each row's
    product weight; check_vi once gave one k-hat for all six points."""
    from hybridpgm.diagnostics import pareto_khat
    from hybridpgm.infer.iwae import importance_log_weights
    from tests.infer.test_iwae import two_vaes

    _, _, x1, x2, model, guide = two_vaes()
    pyro.set_rng_seed(0)
    result = check_vi(model, guide, x1, x2, num_samples=200)
    assert result.khat.shape == (3,) and result.log_likelihood.shape == (3,)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        log_w, _ = importance_log_weights(model, guide, x1, x2, num_particles=200)
    np.testing.assert_allclose(result.khat, pareto_khat(log_w.T)[1], rtol=1e-10)


def test_check_vi_refuses_two_models_over_different_rows():
    from hybridpgm.errors import ObjectiveError
    from tests.infer.test_iwae import two_vaes

    _, _, x1, x2, model, guide = two_vaes(2, 3)
    with pytest.raises(ObjectiveError, match=r"plate 'v1/data' \(dim -1, size 2\).*plate 'v2/data' \(dim -1, "
                                             r"size 3\)"):
        check_vi(model, guide, x1, x2, num_samples=50)


def _pareto_row(num_draws: int, low: float, high: float) -> np.ndarray:
    """A row of ``num_draws`` heavy-tailed log-weights whose k-hat lies in ``(low, high)`` (the first one found
    from a fixed seed)."""
    rng = np.random.default_rng(1)
    while True:
        log_w = np.log(rng.pareto(1.8, size=(1, num_draws)) + 1e-3)
        if low < pareto_khat(log_w)[1][0] < high:
            return log_w


def _arviz_flags(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """``az.loo``'s k-hat and its ``good_k`` for a log-likelihood whose PSIS-LOO weights are ``exp(log_w)``."""
    import arviz as az

    from hybridpgm.diagnostics import make_inference_data

    num_draws = log_w.shape[-1]
    data = make_inference_data({"log_likelihood": {"y": -log_w.T[None]},
                                "posterior": {"mu": np.random.default_rng(0).normal(size=(1, num_draws))}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = az.loo(data, pointwise=True, reff=1.0)
    return np.asarray(result.pareto_k).reshape(-1), float(result.good_k)


@pytest.mark.parametrize("num_draws, low, high, verdict", [(100, 0.5, 0.6, "bad"), (200, 0.5, 0.55, "good")])
def test_vicheck_thresholds_are_arviz_sample_size_dependent_ones(num_draws, low, high, verdict):
    """ArviZ (0.x and 1.x) and the PSIS paper flag k-hat > min(1 - 1/log10 S, 0.7): 0.5 at S = 100, 0.57 at
    S = 200.  Before, VICheck used fixed 0.5 / 0.7: a k-hat of 0.53 was "ok" at S = 100, where az.loo flags it,
    and "ok" at S = 200, where az.loo calls it good."""
    from hybridpgm.diagnostics.check_vi import VICheck

    log_w = _pareto_row(num_draws, low, high)
    khat = pareto_khat(log_w)[1]
    arviz_khat, good_k = _arviz_flags(log_w)
    assert good_k == pytest.approx(1 - 1 / np.log10(num_draws))
    np.testing.assert_allclose(arviz_khat, khat, atol=1e-5)  # the same fit (ArviZ 1.x in float32)
    result = VICheck(khat=khat, log_likelihood=np.zeros(1), num_samples=num_draws)
    assert result.verdict == verdict == ("bad" if arviz_khat[0] > good_k else "good")


def test_good_khat_is_min_of_one_minus_inverse_log10_s_and_0_7():
    from hybridpgm.diagnostics.check_vi import VICheck, good_khat

    assert good_khat(100) == pytest.approx(0.5) and good_khat(200) == pytest.approx(1 - 1 / np.log10(200))
    assert good_khat(2154) < 0.7 and good_khat(2155) == good_khat(10_000) == 0.7
    assert VICheck(khat=np.zeros(1), log_likelihood=np.zeros(1), num_samples=200).threshold == good_khat(200)
    with pytest.raises(ConfigError, match="at least 2 draws, got 1"):
        good_khat(1)
