"""The caches of exact, BP and mean-field queries keep no tensor of a :mod:`torch.func` transform
(:func:`hybridpgm.tensor_tracking.kept_by_a_cache`).

Before, a query first run under ``jacrev``/``hessian``/``grad`` cached index tensors made under that transform (the
MarkovNet's colour tensor and stacked scopes, the exact contraction's fold indices, BP and mean-field plans, the
Bayes net's dense marginaliser): its wrappers, dead once it returned.  The next query under any transform failed
with torch's ``RuntimeError: ... INTERNAL ASSERT FAILED ... escaped?``: ``hessian`` of ``log Z`` twice in a row,
``jacrev(jacrev(...))`` twice, or ``jacrev(jacrev(...))`` then ``jacfwd``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacfwd, jacrev

from hybridpgm.graphs import BayesNet, MarkovNet, cpd

D = torch.float64
METHODS = {"exact": {}, "bp": {"num_iters": 30, "tol": 0.0}, "mean_field": {"num_iters": 30, "tol": 0.0}}


class _Query(nn.Module):
    def __init__(self, model, query):
        super().__init__()
        self.model = model
        self.query = query

    def forward(self):
        return self.query(self.model)


def _mrf() -> MarkovNet:
    """Two factors of one arity (stacked into one group); cardinalities 2, 3, 2 (BP's general path)."""
    g = torch.Generator().manual_seed(0)
    m = MarkovNet({"a": 2, "b": 3, "c": 2})
    m.add_factor("ab", ["a", "b"], nn.Parameter(torch.randn(2, 3, dtype=D, generator=g)))
    m.add_factor("bc", ["b", "c"], torch.randn(3, 2, dtype=D, generator=g))
    return m


@pytest.mark.parametrize("method", list(METHODS))
def test_second_derivatives_of_log_z_twice(method):
    wrapped = _Query(_mrf(), lambda m: m.log_partition(method, **METHODS[method]))

    def f(t):
        return functional_call(wrapped, {"model.table_potentials.ab": t}, ())

    t = wrapped.model.table_potentials.ab.detach().clone()
    first = hessian(f)(t)
    torch.testing.assert_close(hessian(f)(t), first)
    torch.testing.assert_close(jacrev(jacrev(f))(t), first)
    torch.testing.assert_close(jacfwd(f)(t), jacrev(f)(t))


def test_a_net_built_inside_nested_jacrev_twice():
    fixed = torch.tensor([[0.1, 0.5], [-0.3, 0.2], [0.7, -1.0]], dtype=D)

    def log_z(t):
        m = MarkovNet({"a": 2, "b": 3, "c": 2})
        m.add_factor("ab", ["a", "b"], t)
        m.add_factor("bc", ["b", "c"], fixed)
        return m.log_partition("exact")

    t = torch.randn(2, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    first = jacrev(jacrev(log_z))(t)
    torch.testing.assert_close(jacrev(jacrev(log_z))(t), first)
    torch.testing.assert_close(hessian(log_z)(t), first)


def test_second_derivatives_of_a_bayes_net_posterior_twice():
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.tensor([0.3, 0.7], dtype=D)))
    bn.add("b", cpd.Table(torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=D), ["a"]))
    bn.add("c", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]], dtype=D), ["b"]))
    bn.add("d", cpd.Table(torch.tensor([[0.9, 0.1], [0.4, 0.6]], dtype=D), ["c"]))
    wrapped = _Query(bn, lambda b: b.posterior("a", {"d": torch.tensor([0, 1])}))

    def f(t):
        return functional_call(wrapped, {"model.cpds.b.logits": t}, ())

    t = bn.cpds["b"].logits.detach().clone()
    first = hessian(f)(t)
    torch.testing.assert_close(hessian(f)(t), first)
