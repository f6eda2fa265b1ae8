"""Quotients and logs of tiny positive numbers: the plain values and first derivatives, finite second and third
derivatives (:mod:`hybridpgm.graphs.tiny_ratio`), and no extra operation where no graph is recorded."""

import pytest
import torch
from torch.autograd.functional import hessian

from hybridpgm.graphs.tiny_ratio import tiny_log, tiny_ratio
from tests.graphs.recorded_ops import RecordedOps

D = torch.float64


def test_values_and_first_derivatives_are_the_plain_ones():
    """Over sums from 1 down to 1e-300: the same values bit for bit; the first derivatives of the log and of the
    quotient in its numerator bit for bit, in its divisor to rounding."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(50, dtype=D, generator=g) + 0.1) * 10.0 ** -torch.linspace(0, 300, 50, dtype=D)
    a = torch.rand(50, dtype=D, generator=g) * x
    w = torch.randn(50, dtype=D, generator=g)
    xs, as_ = x.clone().requires_grad_(), a.clone().requires_grad_()
    xp, ap = x.clone().requires_grad_(), a.clone().requires_grad_()
    assert torch.equal(tiny_log(xs), xp.log()) and torch.equal(tiny_ratio(as_, xs), ap / xp)
    (got,) = torch.autograd.grad((tiny_log(xs) * w).sum(), xs)
    (want,) = torch.autograd.grad((xp.log() * w).sum(), xp)
    assert torch.equal(got, want)
    got = torch.autograd.grad((tiny_ratio(as_, xs) * w).sum(), [as_, xs])
    want = torch.autograd.grad((ap / xp * w).sum(), [ap, xp])
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-15, atol=0)


@pytest.mark.parametrize("scale", [1e-100, 1e-200, 1e-300])
def test_second_and_third_derivatives_stay_finite_where_the_square_underflows(scale):
    """:math:`x = s (e^{\\theta_0} + e^{\\theta_1})`: :math:`\\log x - \\log s` is a log-sum-exp and
    :math:`s e^{\\theta_0} / x` a softmax, whose Hessians do not depend on :math:`s`; the plain log and quotient
    give infinite or NaN Hessians once :math:`x^2` underflows (:math:`s = 10^{-200}`)."""
    theta = torch.tensor([0.3, -0.4], dtype=D, requires_grad=True)

    def log_sum(t):
        return tiny_log(scale * t.exp().sum())

    def share(t):
        return tiny_ratio(scale * t[0].exp(), scale * t.exp().sum())

    torch.testing.assert_close(hessian(log_sum, theta), hessian(lambda t: t.logsumexp(0), theta), rtol=0, atol=1e-15)
    torch.testing.assert_close(hessian(share, theta), hessian(lambda t: t.softmax(0)[0], theta), rtol=0, atol=1e-15)
    assert torch.autograd.gradgradcheck(log_sum, (theta,)) and torch.autograd.gradgradcheck(share, (theta,))
    if scale < 1e-160:  # the failure the module avoids
        assert not torch.isfinite(hessian(lambda t: (scale * t.exp().sum()).log(), theta)).all()


def test_no_graph_costs_the_plain_operation_alone():
    """Without a graph (no gradient asked, or a first-order backward pass) the plain quotient or log, one op."""
    x = torch.tensor([1e-200, 0.5], dtype=D)
    with RecordedOps() as counted:
        tiny_log(x), tiny_ratio(x, x)
    assert counted.ops == ["aten.log.default", "aten.div.Tensor"]
    x.requires_grad_()
    with torch.no_grad(), RecordedOps() as counted:
        tiny_log(x), tiny_ratio(x, x)
    assert counted.ops == ["aten.log.default", "aten.div.Tensor"]
