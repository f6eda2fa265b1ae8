"""Soft evidence and continuous densities far outside the dtype's range: scaled row by row in log space before
they are exponentiated (:func:`hybridpgm.infer.bn_spaces.prob_factors`), checked against enumeration."""

import math

import numpy as np
import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

PA = np.array([0.4, 0.6])
PCA = np.array([[0.7, 0.3], [0.2, 0.8]])


def _two_nodes(dtype) -> BayesNet:
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor(PA, dtype=dtype)))
    bn.add("c", cpd.Table(torch.tensor(PCA, dtype=dtype), ["a"]))
    return bn


def _close(got, want, dtype) -> None:
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(np.asarray(got.detach().double()), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("scale", [1e-45, 1e-40, 1e39])
def test_float64_likelihood_beyond_float32_range(scale):
    """A float64 likelihood whose values are subnormal (or overflow) in float32 keeps its ratios."""
    bn = _two_nodes(torch.float32)
    lik = np.array([1.0, 0.5])
    ev = {"a": Likelihood(torch.tensor(lik * scale, dtype=torch.float64))}
    w = PA * lik
    _close(bn.posterior("a", ev), w / w.sum(), torch.float32)
    _close(bn.posterior("c", ev), w @ PCA / w.sum(), torch.float32)
    _close(bn.log_evidence(ev) - math.log(scale), math.log(w.sum()), torch.float32)


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e-40), (torch.float64, 1e-310)])
def test_a_likelihood_subnormal_in_its_own_dtype(dtype, scale):
    """Review C found the first version dividing such a likelihood by its maximum clamped to the smallest normal
    number while adding back the logarithm of the maximum itself: log p(e) 4.1 nats low in float32, 4.7 in
    float64 (the posterior was right)."""
    bn = _two_nodes(dtype)
    lik = np.array([1.0, 2.0])
    ev = {"a": Likelihood(torch.tensor(lik * scale, dtype=dtype))}
    w = PA * lik
    _close(bn.posterior("a", ev), w / w.sum(), dtype)
    _close(bn.log_evidence(ev) - math.log(scale), math.log(w.sum()), torch.float32)  # the input's own digits


@pytest.mark.parametrize("shift", [-90.0, -103.0, -110.0])
def test_float32_log_likelihood_in_the_subnormal_range(shift):
    bn = _two_nodes(torch.float32)
    lik = np.array([1.0, 1.3])
    ev = {"a": Likelihood(torch.tensor(np.log(lik) + shift, dtype=torch.float32), log=True)}
    w = PA * lik
    _close(bn.posterior("a", ev), w / w.sum(), torch.float32)
    _close(bn.log_evidence(ev) - shift, math.log(w.sum()), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("y", [5.0, 14.2, 14.5])
def test_continuous_child_in_the_tail(dtype, y):
    """A Gaussian child observed where its log-densities are about -100 (exp of them subnormal in float32)."""
    mean = np.array([0.0, 0.02])
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor(PA, dtype=dtype)))
    bn.add("y", cpd.LinearGaussian(torch.tensor(mean, dtype=dtype), torch.zeros(2, 0, dtype=dtype),
                                   torch.ones(2, dtype=dtype), ["a"]))
    log_w = np.log(PA) - 0.5 * (y - mean) ** 2 - 0.5 * math.log(2 * math.pi)
    ev = {"y": torch.tensor([y, y], dtype=dtype)}
    want = np.exp(log_w - log_w.max())
    _close(bn.posterior("a", ev), np.stack([want / want.sum()] * 2), dtype)
    got = bn.log_evidence(ev).detach().double().numpy()
    np.testing.assert_allclose(got, [np.logaddexp(*log_w)] * 2, rtol=1e-9 if dtype == torch.float64 else 1e-6)


def _offsetting(dtype, k: int, log: bool, rows: int = 1, sign: int = -1):
    """a -> b -> c with b observed at 1, which a reaches with probability 1e-23; likelihoods on a and c of
    scales 1e-300 and 1e300 (``sign=1``: 1e300 and 1e-300; offsetting: the evidence probability is ordinary).
    Returns the network, the evidence and the brute-force weights ``W[a, c]`` of ``b = 1`` (the scales cancel:
    :math:`p(e) = \\sum W`)."""
    g = np.random.default_rng(k)
    pa = g.random(k) + 0.1
    pa /= pa.sum()
    pba = np.stack([np.full(k, 1 - 1e-23), np.full(k, 1e-23)], 1)
    pcb = g.random((2, k)) + 0.1
    pcb /= pcb.sum(1, keepdims=True)
    la, lc = g.random(k) + 0.5, g.random(k) + 0.5
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor(pa, dtype=dtype)))
    bn.add("b", cpd.Table(torch.tensor(pba, dtype=dtype), ["a"]))
    bn.add("c", cpd.Table(torch.tensor(pcb, dtype=dtype), ["b"]))
    if log:
        soft_a = Likelihood(torch.tensor(np.log(la) + sign * 690.0).expand(rows, k), log=True)
        soft_c = Likelihood(torch.tensor(np.log(lc) - sign * 690.0).expand(rows, k), log=True)
    else:
        soft_a = Likelihood(torch.tensor(la * 10.0 ** (sign * 300)).expand(rows, k).clone())
        soft_c = Likelihood(torch.tensor(lc * 10.0 ** (-sign * 300)).expand(rows, k).clone())
    ev = {"a": soft_a, "b": torch.ones(rows, dtype=torch.long), "c": soft_c}
    return bn, ev, np.einsum("a,a,a,c,c->ac", pa, la, pba[:, 1], pcb[1], lc)


@pytest.mark.parametrize("k", [2, 20])  # 20 x 20 joint states: past the dense path
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("sign", [-1, 1])
def test_float64_offsetting_likelihoods(k, log, sign):
    bn, ev, w = _offsetting(torch.float64, k, log, rows=2, sign=sign)
    z = w.sum()
    post = bn.posterior(["a", "c"], ev)
    _close(post["a"], np.stack([w.sum(1) / z] * 2), torch.float64)
    _close(post["c"], np.stack([w.sum(0) / z] * 2), torch.float64)
    _close(bn.posterior(["a", "c"], ev, joint=True), np.stack([w / z] * 2), torch.float64)
    _close(bn.log_evidence(ev), [math.log(z)] * 2, torch.float64)


def test_float64_offsetting_likelihoods_gradient():
    """The gradient of log p(e) in the likelihood values: p(x_a = k, e') / p(e), exact at the tiny scale."""
    bn, ev, w = _offsetting(torch.float64, 2, log=False)
    values = ev["a"].values.clone().requires_grad_()
    ev["a"] = Likelihood(values)
    bn.log_evidence(ev).sum().backward()
    # log p(e) is log-linear in each likelihood value: its derivative is the posterior weight over the value
    want = w.sum(1) / w.sum() / values.detach().numpy()[0]
    np.testing.assert_allclose(values.grad.numpy()[0], want, rtol=1e-9)


def test_float64_offsetting_likelihoods_samples():
    bn, ev, w = _offsetting(torch.float64, 2, log=True)
    s = bn.sample(20000, evidence=ev, generator=torch.Generator().manual_seed(0))
    freq = s["a"].double().mean().item()
    p1 = w.sum(1)[1] / w.sum()
    assert abs(freq - p1) < 4 * math.sqrt(p1 * (1 - p1) / 20000)
    assert bool((s["b"] == 1).all())


# ---- half precision: the row maximum is taken out before the narrowing (soft_evidence.soft_likelihood)

#: a float16 or bfloat16 network is answered in log space from inputs rounded to its precision: the tables and the
#: scaled likelihoods (each to eps/2 relative), then per contraction step a sum of logs, a log-sum-exp (an exp, a
#: sum, a log) and, for a marginal, its derivative (a softmax), each rounding to eps/2 (relative, or absolute on a
#: log of magnitude under one).  On these two- and three-node networks that is under a dozen roundings, so
#: 4 eps bounds a posterior probability's error with room and stays far below the old error: the log-likelihood
#: of 1e-200 (-460.5) rounded to float16's spacing of 0.25 there (bfloat16's 2) moved the posterior by 4-60 eps.
HALF_EPS = {dtype: torch.finfo(dtype).eps for dtype in (torch.float16, torch.bfloat16)}


def _half_close(got, want, dtype) -> None:
    tol = 4 * HALF_EPS[dtype]
    np.testing.assert_allclose(np.asarray(got.detach().double()), want, rtol=0, atol=tol)


def _log_evidence_close(got, want: float, dtype) -> None:
    """log p(e) is returned in the network's dtype: within its rounding of the true value (eps/2 relative) plus
    the contraction's own error in log Z / C (4 eps absolute, as the posterior's), not the old drift of the
    scale's rounded logarithm."""
    eps = HALF_EPS[dtype]
    assert abs(float(got.detach()) - want) <= eps / 2 * abs(want) + 4 * eps, (float(got.detach()), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1e30])
@pytest.mark.parametrize("lik", [(1.0, 0.5), (1.0, 2.0)])
def test_half_precision_float64_likelihood_far_from_one(dtype, scale, lik):
    """Before, log(1e-200) = -460.5 was narrowed to float16 first (a spacing of 0.25 there): p(a | e) came out
    [0.606, 0.472] for [0.571, 0.429] (summing to 1.08); bfloat16 [1.0, 0.136]."""
    bn = _two_nodes(dtype)
    lik = np.array(lik)
    ev = {"a": Likelihood(torch.tensor(lik * scale, dtype=torch.float64))}
    w = PA * lik
    post = bn.posterior(["a", "c"], ev)
    assert post["a"].dtype == dtype
    _half_close(post["a"], w / w.sum(), dtype)
    _half_close(post["c"], w @ PCA / w.sum(), dtype)
    _half_close(bn.posterior(["a", "c"], ev, joint=True), w[:, None] * PCA / w.sum(), dtype)
    _log_evidence_close(bn.log_evidence(ev), math.log(w.sum()) + math.log(scale), dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shift", [-460.5, -5000.0])
def test_half_precision_log_likelihoods_far_from_zero(dtype, shift):
    """float64 log-likelihoods of about -5000 (float16's spacing there is 4: before, every state got the same
    rounded value and the posterior came out [1, 1])."""
    bn = _two_nodes(dtype)
    lik = np.array([1.0, 1.3])
    ev = {"a": Likelihood(torch.tensor(np.log(lik) + shift, dtype=torch.float64).expand(3, 2), log=True)}
    w = PA * lik
    _half_close(bn.posterior("a", ev), np.stack([w / w.sum()] * 3), dtype)
    for got in bn.log_evidence(ev):
        _log_evidence_close(got, math.log(w.sum()) + shift, dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_likelihoods_of_opposite_scales_and_the_map(dtype):
    """Likelihoods of scales 1e-300 on a and 1e300 on c, whose shifts cancel in log p(e); the MAP's
    max log p(x, e) gets both shifts back (its contraction runs on the scaled factors too)."""
    bn = _two_nodes(dtype)
    la, lc = np.array([1.0, 0.5]), np.array([0.3, 1.0])
    ev = {"a": Likelihood(torch.tensor(la * 1e-300)), "c": Likelihood(torch.tensor(lc * 1e300))}
    w = PA[:, None] * la[:, None] * PCA * lc  # w[a, c]
    post = bn.posterior(["a", "c"], ev)
    _half_close(post["a"], w.sum(1) / w.sum(), dtype)
    _half_close(post["c"], w.sum(0) / w.sum(), dtype)
    _log_evidence_close(bn.log_evidence(ev), math.log(w.sum()), dtype)
    best, log_p = bn.map(ev, return_log_prob=True)
    assert (best["a"].item(), best["c"].item()) == np.unravel_index(w.argmax(), w.shape)
    _log_evidence_close(log_p, math.log(w.max()), dtype)


@pytest.mark.parametrize("scale", [-1e4, 1e4])
def test_float32_log_likelihoods_far_from_zero(scale):
    """float32's spacing at 1e4 is 1e-3: before, the log-likelihood was rounded there before its maximum was
    taken out, moving the posterior by about 3e-4 (float32 answers are good to 1e-5 here)."""
    bn = _two_nodes(torch.float32)
    lik = np.array([1.0, 1.3])
    ev = {"a": Likelihood(torch.tensor(np.log(lik) + scale, dtype=torch.float64), log=True)}
    w = PA * lik
    _close(bn.posterior("a", ev), w / w.sum(), torch.float32)
    _close(bn.posterior("c", ev), w @ PCA / w.sum(), torch.float32)
    assert abs(bn.log_evidence(ev).item() - (math.log(w.sum()) + scale)) <= 1e-3  # float32's rounding of ~1e4


@pytest.mark.parametrize("log", [False, True])
def test_float32_posterior_samples_with_likelihoods_far_from_one(log):
    """Exact posterior samples of a float32 network with soft evidence of scale 1e-300 on a (float64 values) and
    log-likelihoods of -1e4 on c: the frequencies of a's states pass a chi-square test against enumeration
    (fixed seed), and each sample's log p(x | e) is enumeration's to float32's precision (before, the
    log-likelihoods of -1e4 were rounded to float32's spacing of 1e-3 first: log p off by up to 5e-4)."""
    from scipy import stats

    from hybridpgm.infer.exact import posterior_sample

    bn = _two_nodes(torch.float32)
    la, lc = np.array([1.0, 0.5]), np.array([0.3, 1.0])
    soft_a = torch.tensor(np.log(la) - 690.0) if log else torch.tensor(la * 1e-300)
    ev = {"a": Likelihood(soft_a, log=log), "c": Likelihood(torch.tensor(np.log(lc) - 1e4), log=True)}
    joint = PA[:, None] * la[:, None] * PCA * lc  # w[a, c]
    s, log_p = posterior_sample(bn, 20000, ev, generator=torch.Generator().manual_seed(0), return_log_prob=True)
    counts = np.bincount(s["a"].numpy(), minlength=2)
    assert stats.chisquare(counts, joint.sum(1) / joint.sum() * 20000).pvalue > 1e-4
    want = np.log(joint / joint.sum())[s["a"].numpy(), s["c"].numpy()]
    np.testing.assert_allclose(log_p.double().numpy(), want, rtol=0, atol=8 * torch.finfo(torch.float32).eps)


def _chain_past_the_dense_path(dtype, leaves=0, tiny=1e-40):
    """x0 -> x1 -> ... -> x9 (1024 joint states: past the dense path, so the log-space contraction answers), plus
    ``leaves`` observed children y_j of x0 with p(y_j = 1 | x0) of about ``tiny``; and its log p(e) for the evidence
    {x9: Likelihood([2, 8]), x3: [1, 0], y_j: 1}, by a forward pass in numpy (independent of the library)."""
    bn = BayesNet().add("x0", cpd.Table(torch.tensor(PA, dtype=dtype)))
    tables = [np.array([[0.3 + 0.05 * i, 0.7 - 0.05 * i], [0.8, 0.2]]) for i in range(1, 10)]
    for i, table in enumerate(tables, 1):
        bn.add(f"x{i}", cpd.Table(torch.tensor(table, dtype=dtype), [f"x{i - 1}"]))
    leaf = np.array([[1 - tiny, tiny], [1 - 2 * tiny, 2 * tiny]])
    for j in range(leaves):
        bn.add(f"y{j}", cpd.Table(torch.tensor(leaf, dtype=dtype), ["x0"]))
    ev = {f"y{j}": torch.tensor([1.0, 1.0]) for j in range(leaves)}
    ev.update({"x9": Likelihood(torch.tensor([2.0, 8.0], dtype=torch.float64)), "x3": torch.tensor([1.0, 0.0])})
    want = []
    for x3 in (1, 0):
        log_a = np.log(PA) + leaves * np.log(leaf[:, 1])
        for i, table in enumerate(tables, 1):
            log_a = np.logaddexp.reduce(log_a[:, None] + np.log(table), axis=0)
            if i == 3:
                log_a = np.where(np.arange(2) == x3, log_a, -np.inf)
        want.append(np.logaddexp.reduce(log_a + np.log([2.0, 8.0])))
    return bn, ev, want


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_log_evidence_past_the_dense_path_keeps_the_likelihoods_maximum(dtype):
    """A half-precision network contracts in log space with the likelihood's row maximum (log 8) taken out; the
    query to the rows adds it back.  Without it (a mutation that survived the suite: the soft-evidence tests' networks
    are small enough for the dense path) float16 gave [-1.18, -1.13] for [0.30, 0.73]."""
    bn, ev, want = _chain_past_the_dense_path(dtype)
    got = bn.log_evidence(ev)
    assert got.dtype == dtype
    for g, w in zip(got, want):
        _log_evidence_close(g, w, dtype)


def test_float64_rows_redone_in_log_space_past_the_dense_path_keep_the_likelihoods_maximum():
    """float64 evidence of about 1e-278 (under the probability floor: the rows are redone in log space) with soft
    evidence on a network past the dense path: log p(e) is the numpy forward pass's to 1e-12 (without the shift
    it was log 8 = 2.08 nats low)."""
    bn, ev, want = _chain_past_the_dense_path(torch.float64, leaves=7)
    got = bn.log_evidence(ev)
    assert max(want) < math.log(1e-250)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=0)
