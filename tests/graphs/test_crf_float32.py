"""LinearChainCRF in float32 on long sequences with large scores: log Z, log_prob and the entropy against the
float64 answer on the same (float32-representable) scores.

log Z and a path's score (or the expected score) are each ~T x score, and log_prob and the entropy are their
nearly cancelling difference.  Summed over the ``T`` steps in float32 and subtracted there, each big sum carries a
few ulps of its own magnitude (at T = 2000 and scores of 50, ulp(1.5e5) = 1.6e-2 nats) into the small result.
Summed in float64, only the rounding of the steps themselves is left.  The bound, derived rather than fitted:
step ``t`` of the forward recursion rounds four times (``alpha + A``, the log-sum-exp, ``+ phi_t``, the shift by
the maximum), each by at most eps/2 of a magnitude at most :math:`m_t = \\max_l |\\phi_t(l)| + \\max_{ij} |A_{ij}|
+ \\log L`, so by at most :math:`2 \\epsilon m_t`.  These errors are independent and of either sign, so their sum
stays within 3 times :math:`\\sqrt{\\sum_t (2 \\epsilon m_t)^2}` (about 5 standard deviations, as a term bounded
by b has a standard deviation of at most b / sqrt(3)).  The expected score of the entropy rounds as often per
step, at the same magnitudes (twice the allowance), and the float32 output is rounded once more: eps/2 of it.
"""

import math

import pytest
import torch

from hybridpgm.graphs import LinearChainCRF

EPS = torch.finfo(torch.float32).eps


def _long_crfs(seed=0, batch=8, T=2000, L=10, scale=50.0):
    """The float32 CRF of ``batch`` random sequences (unary ~ N(0, scale^2), transitions ~ N(0, (scale/5)^2)),
    the float64 CRF of the same values, and the per-sequence allowance ``3 sqrt(sum_t (2 eps m_t)^2)``."""
    g = torch.Generator().manual_seed(seed)
    u = scale * torch.randn(batch, T, L, generator=g)
    A = scale / 5 * torch.randn(L, L, generator=g)
    s, e = torch.randn(L, generator=g), torch.randn(L, generator=g)
    c32, c64 = LinearChainCRF(u, A, s, e), LinearChainCRF(u.double(), A.double(), s.double(), e.double())
    m = u.double().abs().amax(-1) + A.double().abs().max() + math.log(L)  # [batch, T]
    m[:, 0] += s.double().abs().max()
    m[:, -1] += e.double().abs().max()
    steps = 3 * (2 * EPS * m).square().sum(-1).sqrt()  # [batch]
    return c32, c64, steps


def test_float32_log_prob_of_a_long_sequence_is_within_the_rounding_of_its_steps():
    """log_prob of the best labelling and of a sample at T = 2000, |scores| ~ 50: the old float32 sums of log Z
    and of the path score, each ~1.5e5, left errors of ~1e-2 nats; the allowance here is ~3e-3."""
    c32, c64, steps = _long_crfs()
    for y in (c64.argmax(), c64.sample()):
        want, got = c64.log_prob(y), c32.log_prob(y)
        assert got.dtype == torch.float32
        bound = steps + EPS / 2 * want.abs()
        assert ((got.double() - want).abs() <= bound).all(), ((got.double() - want).abs() / bound).max()


def test_float32_entropy_of_a_long_sequence_is_within_the_rounding_of_its_steps():
    """The entropy H = log Z - E[s] at T = 2000, |scores| ~ 50: both terms ~1.5e5, formerly each rounded in float32
    before they cancelled to H ~ 70 (errors ~1e-2 nats)."""
    c32, c64, steps = _long_crfs(seed=1)
    want, got = c64.entropy(), c32.entropy()
    assert got.dtype == torch.float32
    bound = 2 * steps + EPS / 2 * want.abs()
    assert ((got.double() - want).abs() <= bound).all(), ((got.double() - want).abs() / bound).max()


def test_float32_entropy_of_a_long_uncertain_sequence_sums_its_expected_transition_score_per_step():
    """|scores| ~ 3, T = 5000: the entropy is ~4500 and nearly half of E[s] comes from the transitions.  Taken as
    sum(A * pairwise_marginals), whose expected counts (~T / L^2 .. T) autograd sums over the T steps in
    float32, it was ~2e-3 nats off; summed step by step in float64 it is within the allowance (~6e-4 here)."""
    c32, c64, steps = _long_crfs(seed=0, batch=4, T=5000, scale=3.0)
    want, got = c64.entropy(), c32.entropy()
    bound = 2 * steps + EPS / 2 * want.abs()
    assert ((got.double() - want).abs() <= bound).all(), ((got.double() - want).abs() / bound).max()


def test_float32_log_partition_of_a_long_sequence_is_its_float64_value_rounded_up_to_its_steps():
    """log Z itself (~1.5e5) is a float32 output, so eps/2 of it (~9e-3) is its own rounding; the T shifts are
    summed in float64, so at most the steps' allowance more."""
    c32, c64, steps = _long_crfs(seed=2)
    want, got = c64.log_partition, c32.log_partition
    assert got.dtype == torch.float32
    bound = steps + EPS / 2 * want.abs()
    assert ((got.double() - want).abs() <= bound).all(), ((got.double() - want).abs() / bound).max()


def test_float32_log_prob_keeps_its_gradient_and_float64_is_unchanged():
    """Guard (passes on the old code too): the float64 accumulation changes no gradient (log_prob's is one-hot
    minus the marginals) and a float64 CRF gives the same answers as before, to float64 rounding."""
    c32, c64, _ = _long_crfs(batch=2, T=300)
    u = c32.unary.detach().clone().requires_grad_()
    y = c64.argmax()
    (grad,) = torch.autograd.grad(LinearChainCRF(u, c32.transition, c32.start, c32.end).log_prob(y).sum(), u)
    assert grad.dtype == torch.float32
    want = torch.nn.functional.one_hot(y, 10).double() - c64.marginals
    assert (grad.double() - want).abs().max() < 1e-4
    lp = c64.log_prob(y)
    torch.testing.assert_close(lp, c64.score(y) - c64.log_partition, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_of_one_step_sequences_has_a_zero_gradient_for_the_transition(dtype):
    """T = 1: the transition takes no part in the entropy, yet it is one of its inputs, so its gradient is zeros
    (torch.autograd.grad and .backward() alike).  Skipping the transition term at T = 1 left it out of the graph:
    'appears to not have been used in the graph', and transition.grad stayed None."""
    g = torch.Generator().manual_seed(0)
    unary = torch.randn(3, 1, 2, generator=g, dtype=dtype, requires_grad=True)
    transition = torch.randn(2, 2, generator=g, dtype=dtype, requires_grad=True)
    _, grad = torch.autograd.grad(LinearChainCRF(unary, transition).entropy().sum(), [unary, transition])
    assert torch.equal(grad, torch.zeros_like(transition))
    LinearChainCRF(unary, transition).entropy().sum().backward()
    assert transition.grad is not None and torch.equal(transition.grad, torch.zeros_like(transition))


def test_float32_entropy_gradient_is_that_of_the_float64_entropy():
    """Guard (passes on the old code too): the float32 entropy's value is summed step by step from the backward
    pass, without a graph; its gradient (and its Hessian) is that of log Z - E[s], against float64."""
    c32, c64, _ = _long_crfs(batch=2, T=40, scale=3.0)
    grads = []
    for c in (c32, c64):
        u, A = c.unary.detach().clone().requires_grad_(), c.transition[0].detach().clone().requires_grad_()
        grads.append(torch.autograd.grad(LinearChainCRF(u, A, c.start, c.end).entropy().sum(), [u, A]))
    for got, want in zip(*grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    A = c64.transition[0]

    def entropy(A, dtype):
        return LinearChainCRF(c64.unary[:, :5].to(dtype), A.to(dtype)).entropy().sum()

    h32 = torch.func.hessian(entropy)(A.float(), torch.float32)
    h64 = torch.autograd.functional.hessian(lambda a: entropy(a, torch.float64), A)
    torch.testing.assert_close(h32.double(), h64, rtol=1e-4, atol=1e-4)
