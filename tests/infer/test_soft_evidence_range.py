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
