"""A ``cpd.Table`` built inside a :mod:`torch.func` transform (:mod:`hybridpgm.graphs.cpd_table`).

Its ``support`` mask is then a tensor of the transform, with no storage of its own: the memo of "has a structural
zero" (and of "the prior is below one") read its data pointer, and a query or ``log_prior`` failed with torch's
``RuntimeError: Cannot access data pointer of Tensor that doesn't have storage``.  They now read the mask each
time there (:func:`hybridpgm.tensor_tracking.unversioned`) and give the derivatives plain autograd gives."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.func import grad, jvp

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd

D = torch.float64
EVIDENCE = {"c": torch.tensor([0, 1])}


def _probs(logits: torch.Tensor, zero: bool) -> torch.Tensor:
    """``softmax(logits)`` over the rows' states; with ``zero``, state 2 of row 0 a structural zero."""
    p = torch.softmax(logits, -1)
    if not zero:
        return p
    row0 = torch.cat([torch.softmax(logits[0, :2], -1), logits.new_zeros(1)])
    return torch.stack([row0, p[1]])


def _table(logits: torch.Tensor, zero: bool, prior=None) -> cpd.Table:
    return cpd.Table(_probs(logits, zero), ["a"], learnable=False, prior=prior)


def _log_evidence(logits: torch.Tensor, zero: bool) -> torch.Tensor:
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", _table(logits, zero))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]], dtype=D), ["b"]))
    return bn.log_evidence(EVIDENCE)


def _point() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, dtype=D, generator=g), torch.randn(2, 3, dtype=D, generator=g)


@pytest.mark.parametrize("zero", [False, True], ids=["dense", "structural_zero"])
def test_a_table_built_inside_jvp(zero):
    logits, tangent = _point()
    expected = (jacobian(lambda t: _log_evidence(t, zero), logits) * tangent).sum((-2, -1))
    assert expected.abs().max() > 1e-3
    value, derivative = jvp(lambda t: _log_evidence(t, zero), (logits,), (tangent,))
    torch.testing.assert_close(derivative, expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(value, _log_evidence(logits, zero))


@pytest.mark.parametrize("zero", [False, True], ids=["dense", "structural_zero"])
def test_a_table_built_inside_grad(zero):
    logits, _ = _point()
    x = logits.clone().requires_grad_()
    expected, = torch.autograd.grad(_log_evidence(x, zero).sum(), x)
    torch.testing.assert_close(grad(lambda t: _log_evidence(t, zero).sum())(logits), expected, rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize("zero", [False, True], ids=["dense", "structural_zero"])
def test_log_prior_of_a_table_built_inside_grad(zero):
    logits, _ = _point()
    x = logits.clone().requires_grad_()
    alpha = torch.tensor([1.5, 2.0, 3.0], dtype=D)
    expected, = torch.autograd.grad(_table(x, zero, alpha).log_prior(), x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(grad(lambda t: _table(t, zero, alpha).log_prior())(logits), expected, rtol=1e-10,
                               atol=1e-14)


def test_a_prior_below_one_inside_grad_is_refused_by_name():
    def log_prior(logits):
        bn = BayesNet()
        bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
        bn.add("b", _table(logits, False, 0.5))
        return bn.cpds["b"].log_prior()

    with pytest.raises(ModelSpecError, match="node 'b'.*0.5 < 1"):
        grad(log_prior)(_point()[0])
