"""Second and third derivatives of exact MRF queries where the max-shifted sum is tiny: finite and exact.

Found by an audit: two factors over ``(a, b)`` peaking on different states, offset by ``c``, give a max-shifted
:math:`\\tilde Z` of about :math:`e^{-c}`; :math:`\\log Z` and the marginals were right, but the Hessian of
:math:`\\log Z` (and the Jacobian of the marginals) was :math:`-\\infty` in every entry at ``c`` = 460
(:math:`\\tilde Z \\approx 10^{-200}`, probability space: its log's second derivative divides by
:math:`\\tilde Z^2`) and 600 (under the floor, log space: :class:`~hybridpgm.graphs.contraction_steps.LogOfSum`)."""

import pytest
import torch
from torch.autograd import gradgradcheck
from torch.autograd.functional import hessian, jacobian

from hybridpgm.graphs import MarkovNet
from tests.infer.test_mrf_exact import semirings  # noqa: F401 (a fixture)

D = torch.float64


def _other(c: float) -> torch.Tensor:
    return torch.tensor([[-c, -c], [0.0, 0.3]], dtype=D)


def _model(t1: torch.Tensor, c: float) -> MarkovNet:
    return MarkovNet({"a": 2, "b": 2}).add_factor("f1", ["a", "b"], t1).add_factor("f2", ["a", "b"], _other(c))


def _log_z(t1, c):
    return _model(t1, c).log_partition("exact")


def _marginals(t1, c):
    marg = _model(t1, c).marginals("exact")
    return torch.cat([marg["a"], marg["b"]])


def _brute_log_z(t1, c):
    return torch.logsumexp((t1 + _other(c)).reshape(-1), 0)


def _brute_marginals(t1, c):
    p = torch.softmax((t1 + _other(c)).reshape(-1), 0).reshape(2, 2)
    return torch.cat([p.sum(1), p.sum(0)])


@pytest.mark.parametrize("c, space", [(100.0, "prob"), (300.0, "prob"), (460.0, "prob"), (600.0, "log")])
def test_the_hessian_of_exact_log_z_is_exact_where_the_shifted_sum_is_tiny(c, space, semirings):  # noqa: F811
    """Against brute force (:func:`torch.logsumexp` over the four states, whose derivatives are exact): log Z,
    its gradient, its Hessian and the Jacobian of the marginals, to 1e-13; ``c`` = 100 and 300 were exact."""
    x0 = torch.tensor([[0.0, 0.2], [-c, -c]], dtype=D)
    exact = dict(rtol=0, atol=1e-13)
    torch.testing.assert_close(_log_z(x0, c), _brute_log_z(x0, c), rtol=1e-15, atol=0)
    torch.testing.assert_close(jacobian(lambda t: _log_z(t, c), x0), jacobian(lambda t: _brute_log_z(t, c), x0),
                               **exact)
    torch.testing.assert_close(_marginals(x0, c), _brute_marginals(x0, c), **exact)
    h = hessian(lambda t: _log_z(t, c), x0)
    torch.testing.assert_close(h, hessian(lambda t: _brute_log_z(t, c), x0), **exact)
    torch.testing.assert_close(jacobian(lambda t: _marginals(t, c), x0),
                               jacobian(lambda t: _brute_marginals(t, c), x0), **exact)
    assert h.abs().max() > 0.1
    # the space whose log was at fault: probability space alone, or also log space for the model under its floor
    assert {semiring for semiring, *_ in semirings} == ({"prob"} if space == "prob" else {"prob", "log"})


@pytest.mark.parametrize("c", [460.0, 600.0])
def test_third_derivatives_where_the_shifted_sum_is_tiny(c):
    """``gradgradcheck`` of the marginals (the third derivatives of log Z) in both factors' tables."""
    x0 = torch.tensor([[0.0, 0.2], [-c, -c]], dtype=D, requires_grad=True)
    x1 = _other(c).requires_grad_()

    def marginals(t1, t2):
        marg = MarkovNet({"a": 2, "b": 2}).add_factor("f1", ["a", "b"], t1).add_factor("f2", ["a", "b"], t2) \
            .marginals("exact")
        return torch.cat([marg["a"], marg["b"]])

    assert gradgradcheck(marginals, (x0, x1), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("c", [100.0, 460.0, 600.0])
def test_differentiable_answers_are_the_bits_of_the_plain_ones(c):
    """First-order results unchanged: log Z and the marginals of potentials that require a gradient (whose log
    keeps finite derivatives of every order) are the same bits as under ``torch.no_grad()`` (the plain log)."""
    x0 = torch.tensor([[0.0, 0.2], [-c, -c]], dtype=D, requires_grad=True)
    log_z, marg = _log_z(x0, c), _marginals(x0, c)
    with torch.no_grad():
        assert log_z.requires_grad and torch.equal(log_z.detach(), _log_z(x0, c))
        assert marg.requires_grad and torch.equal(marg.detach(), _marginals(x0, c))
