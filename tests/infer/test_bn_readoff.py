"""The operands marginals are read off (:mod:`hybridpgm.infer.bn_readoff`) under :mod:`torch.func` transforms.

Found by audit 39: in a one-row query every query node's marginal is read off its own CPD factor.  A factor that
depends on no input of the transform (``x7``'s, differentiating in ``x8``'s logits only) is a plain tensor, which
the query made a leaf with ``requires_grad_()``; torch refuses that under any :mod:`torch.func` transform, so
``jacrev`` and ``grad`` raised torch's "requires_grad_() ... inside of a function being transformed", and
``jacfwd`` and ``hessian`` (whose forward mode runs under a ``vmap``) the ConfigError saying that the query does not
support ``vmap``.  In both spaces; the same query on two rows (its marginals off per-row indicators) was right.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import in_space, single_thread  # noqa: F401 (autouse fixture)

D = torch.float64
PARAM = "bn.cpds.x8.logits"


def _chain(t: float | None = None) -> BayesNet:
    """The chain ``x0 -> ... -> x9`` of binary nodes (512 joint states of the free ones: past the dense path, the
    marginals are gradients of the evidence), its parameters frozen; with ``t``, ``x8`` almost surely 0 and
    ``x9 = 1`` almost surely only where ``x8 = 1``: :math:`p(x_9 = 1) \\approx 2t`."""
    g = torch.Generator().manual_seed(1)
    bn = BayesNet().add("x0", cpd.Table(torch.softmax(torch.randn(2, dtype=D, generator=g), -1)))
    for i in range(1, 10):
        bn.add(f"x{i}", cpd.Table(torch.softmax(torch.randn(2, 2, dtype=D, generator=g), -1), [f"x{i - 1}"]))
    if t is not None:
        bn.cpds["x8"].logits.data = torch.tensor([[1 - t, t], [1 - 3 * t, 3 * t]], dtype=D).log()
        bn.cpds["x9"].logits.data = torch.tensor([[1 - t, t], [t, 1 - t]], dtype=D).log()
    return bn.requires_grad_(False)


class _Posterior(nn.Module):
    """``p(x7, x8 | x9 = 1)`` on ``rows`` equal rows: the two ``[rows, 2]`` marginals joined, ``[rows, 4]``."""

    def __init__(self, bn: BayesNet, rows: int):
        super().__init__()
        self.bn, self.evidence = bn, {"x9": torch.ones(rows, dtype=torch.long)}

    def forward(self) -> torch.Tensor:
        post = self.bn.posterior(["x7", "x8"], self.evidence)
        return torch.cat([post["x7"], post["x8"]], -1)


def _of_logits(bn: BayesNet, rows: int):
    """The posterior as a function of ``x8``'s logits alone, and their value."""
    module = _Posterior(bn, rows)
    return (lambda x: functional_call(module, {PARAM: x}, ())), bn.cpds["x8"].logits.detach().clone()


def _finite_differences(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central differences of ``f`` (no transform) in every entry of ``x``: ``f(x).shape + x.shape``."""
    columns = []
    for k in range(x.numel()):
        e = torch.zeros(x.numel(), dtype=x.dtype)
        e[k] = h
        e = e.reshape(x.shape)
        columns.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(columns, -1).reshape(*columns[0].shape, *x.shape)


def _basis(x: torch.Tensor) -> torch.Tensor:
    return torch.eye(x.numel(), dtype=x.dtype).reshape(x.numel(), *x.shape)


#: each transform of the one-row posterior ``f`` at ``x``, as the Jacobian (or Hessian) it gives, ``[1, 4, 2, 2]``
TRANSFORMS = {
    "jacrev": lambda f, x: jacrev(f)(x),
    "jacfwd": lambda f, x: jacfwd(f)(x),
    "grad": lambda f, x: torch.stack([grad(lambda y, j=j: f(y)[0, j])(x) for j in range(4)])[None],
    "vmap of jvp": lambda f, x: vmap(lambda v: jvp(f, (x,), (v,))[1])(_basis(x)).movedim(0, -1).reshape(
        1, 4, *x.shape),
    "vmap of vjp": lambda f, x: vmap(vjp(f, x)[1])(torch.eye(4, dtype=x.dtype).reshape(4, 1, 4))[0].reshape(
        1, 4, *x.shape),
}


@pytest.mark.parametrize("prob", [True, False], ids=["prob", "log"])
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_one_row_posterior_under_torch_func(transform, prob):
    """Each transform of the one-row query equals the two-row query's (whose marginals are read off indicators)
    row 0, plain autograd's Jacobian, and central differences; and the query's value is unchanged."""
    bn = _chain()
    f, x = _of_logits(bn, 1)
    two, _ = _of_logits(bn, 2)
    with in_space(prob):
        got = TRANSFORMS[transform](f, x)
        want = jacrev(two)(x)[:1]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(got, torch.autograd.functional.jacobian(f, x), rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(got, _finite_differences(f, x), rtol=0, atol=1e-8)
        torch.testing.assert_close(f(x), two(x)[:1], rtol=1e-14, atol=0)
    assert got.abs().max() > 1e-3  # x7 and x8 move with x8's logits


@pytest.mark.parametrize("prob", [True, False], ids=["prob", "log"])
def test_one_row_hessian(prob):
    """``torch.func.hessian`` (forward over reverse) of each marginal entry: the two-row query's, and central
    differences of the one-row reverse-mode gradient."""
    bn = _chain()
    f, x = _of_logits(bn, 1)
    two, _ = _of_logits(bn, 2)
    with in_space(prob):
        for j in range(4):
            got = hessian(lambda y, j=j: f(y)[0, j])(x)
            torch.testing.assert_close(got, hessian(lambda y, j=j: two(y)[0, j])(x), rtol=1e-10, atol=1e-14)
            gradient = jacrev(lambda y, j=j: f(y)[0, j])
            torch.testing.assert_close(got, _finite_differences(gradient, x), rtol=0, atol=1e-7)
            assert got.abs().max() > 1e-4


def test_the_audit_case_tiny_evidence_answered_in_log_space():
    """The audit's reproducer: :math:`p(e) \\approx 3 \\cdot 10^{-150}`, under float64's probability floor, so the
    one row is answered in log space without patching the floor; ``jacfwd`` and ``jacrev`` agree with the two-row
    query and with central differences."""
    bn = _chain(1e-150)
    assert bn.log_evidence({"x9": torch.tensor([1])}).item() < -340
    f, x = _of_logits(bn, 1)
    two, _ = _of_logits(bn, 2)
    want = jacrev(two)(x)[:1]
    assert want.abs().max() > 1e-2
    for transform in (jacfwd, jacrev):
        torch.testing.assert_close(transform(f)(x), want, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(want, _finite_differences(f, x), rtol=0, atol=1e-8)


def test_the_plain_query_is_untouched():
    """Guard (passes before and after): outside a transform, a query of frozen tables has no graph, and one in
    parameters that require grad is differentiable with autograd's Jacobian of the transforms above."""
    bn = _chain()
    f, x = _of_logits(bn, 1)
    assert not f(x).requires_grad
    x.requires_grad_()
    out = f(x)
    assert out.requires_grad
    rows = [torch.autograd.grad(out[0, j], x, retain_graph=True)[0] for j in range(4)]
    two, _ = _of_logits(bn, 2)
    torch.testing.assert_close(torch.stack(rows)[None], jacrev(two)(x.detach())[:1], rtol=1e-10, atol=1e-14)
