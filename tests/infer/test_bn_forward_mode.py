"""Forward-mode derivatives of exact Bayes-net queries in a table's logits (:mod:`hybridpgm.infer.bn_factors`).

A table whose logits carry a :mod:`torch.autograd.forward_ad` tangent (a dual passed in through
:func:`torch.func.functional_call`, or a fixed table built from a dual) has ``requires_grad=False``; before, the
query took it for a table needing no gradient and used its cached, detached log-table: the tangent of
``log_evidence`` and ``posterior`` came out ``None``, where reverse mode and :func:`torch.func.jvp` give the
derivative."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad
from torch.autograd.functional import jacobian
from torch.func import functional_call

from hybridpgm.graphs import BayesNet, cpd

D = torch.float64
EVIDENCE = {"c": torch.tensor([0, 1])}
B = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=D)


def _chain(b: cpd.Table) -> BayesNet:
    """``a -> b -> c`` with ``b``'s table ``b``."""
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", b)
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]], dtype=D), ["b"]))
    return bn


class _Query(nn.Module):
    """``forward()`` runs ``query`` on the network (what :func:`functional_call` calls)."""

    def __init__(self, bn: BayesNet, query):
        super().__init__()
        self.bn = bn
        self.query = query

    def forward(self) -> torch.Tensor:
        return self.query(self.bn)


QUERIES = {"log_evidence": lambda bn: bn.log_evidence(EVIDENCE), "posterior": lambda bn: bn.posterior("a", EVIDENCE)}


def _reverse_jvp(f, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:math:`J_f(x) v` by reverse mode (plain autograd)."""
    return (jacobian(f, x) * v).sum((-2, -1))


def _point() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, dtype=D, generator=g), torch.randn(2, 3, dtype=D, generator=g)


@pytest.mark.parametrize("name", list(QUERIES))
def test_forward_ad_on_learnable_logits_through_functional_call(name):
    wrapped = _Query(_chain(cpd.Table(B, ["a"])), QUERIES[name])
    wrapped.bn.log_evidence(EVIDENCE)  # a query before: the table's cache entry is filled

    def f(logits):
        return functional_call(wrapped, {"bn.cpds.b.logits": logits}, ())

    logits, tangent = _point()
    expected = _reverse_jvp(f, logits, tangent)
    assert expected.abs().max() > 1e-3
    with torch.no_grad(), forward_ad.dual_level():  # no reverse mode at all: only the tangent carries the derivative
        out = forward_ad.unpack_dual(f(forward_ad.make_dual(logits, tangent)))
    assert out.tangent is not None
    torch.testing.assert_close(out.tangent, expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(out.primal, f(logits))


def test_forward_ad_through_a_fixed_table_built_from_a_dual():
    def f(logits):
        return _chain(cpd.Table(torch.softmax(logits, -1), ["a"], learnable=False)).log_evidence(EVIDENCE)

    logits, tangent = _point()
    expected = _reverse_jvp(f, logits, tangent)
    assert expected.abs().max() > 1e-3
    with forward_ad.dual_level():
        out = forward_ad.unpack_dual(f(forward_ad.make_dual(logits, tangent)))
    assert out.tangent is not None
    torch.testing.assert_close(out.tangent, expected, rtol=1e-10, atol=1e-14)
