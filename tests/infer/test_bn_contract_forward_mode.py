"""Forward-mode derivatives of the posterior marginals read off a contraction (:mod:`hybridpgm.infer.bn_contract`).

Past the dense path (more than 256 unobserved joint states) the marginals are gradients of the evidence
:math:`Z_n`.  The factors of a forward-mode query (:func:`torch.func.jvp`, :func:`torch.func.jacfwd`, a
:mod:`torch.autograd.forward_ad` dual) carry a tangent but need not require grad; before, the query took them for
tensors needing no derivative and detached the factor a marginal is read off, :math:`Z_n`, and the reverse pass
run by hand in the workspace: the tangent came out wrong (0.04 off on the tree below) and ``jacfwd`` of a marginal
read off a factor raised torch's "requires_grad_() ... inside of a function being transformed".  ``jacfwd`` must
equal ``jacrev`` (which was right), and a dual's tangent must be :math:`J v`, with no graph on the answer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call, jacfwd, jacrev

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import in_space, single_thread  # noqa: F401 (autouse fixture)

D = torch.float64
K = 11  # r -> x0 -> ... -> x10, each x_i -> y_i: 3^12 joint states of r and the x's


def _tree(extra: bool = False) -> BayesNet:
    """The tree ``r -> x0 -> x1 -> ... -> x10`` (3 states), ``x_i -> y_i`` (2 states); with ``extra`` also a
    neural node ``n`` (parent ``x3``, a context input ``c``) and a linear-Gaussian node ``g`` (parent ``x7``); its
    parameters frozen."""
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("r", cpd.Table(torch.softmax(torch.randn(3, dtype=D, generator=g), -1)))
    for i in range(K):
        bn.add(f"x{i}", cpd.Table(torch.softmax(torch.randn(3, 3, dtype=D, generator=g), -1),
                                  ["r" if i == 0 else f"x{i - 1}"]))
        bn.add(f"y{i}", cpd.Table(torch.softmax(torch.randn(3, 2, dtype=D, generator=g), -1), [f"x{i}"]))
    if extra:
        torch.manual_seed(1)
        bn.add("n", cpd.Neural(nn.Linear(4, 2).double(), ["x3"], 2, context=["c"]))
        bn.add("g", cpd.LinearGaussian(torch.tensor([-1.0, 0.5, 2.0], dtype=D), None, torch.tensor(
            [1.0, 0.7, 1.3], dtype=D), ["x7"]))
    return bn.requires_grad_(False)  # only the tangents given (or jacrev's inputs) are differentiated


class _Query(nn.Module):
    """``forward()`` is the posterior marginals of ``names``, joined along their last dim."""

    def __init__(self, bn: BayesNet, names, evidence):
        super().__init__()
        self.bn, self.names, self.evidence = bn, names, evidence

    def forward(self) -> torch.Tensor:
        post = self.bn.posterior(self.names, self.evidence)
        return torch.cat([post[q] for q in self.names], -1)


def _y(row) -> dict:
    return {f"y{i}": torch.tensor([v(i) for v in row]) for i in range(K)}


#: evidence, query: marginals off indicators (r, x5), off a likelihood operand (y5, observed in some rows), off
#: the node's own factor (every node of a one-row query; x5 below an observed x4), and rows redone in log space
CASES = {
    "indicators": (_y([lambda i: i % 2, lambda i: 1 - i % 2, lambda i: i % 3 % 2]), ["r", "x5"]),
    "indicators and a likelihood": (_y([lambda i: i % 2, lambda i: 1 - i % 2, lambda i: -1]) | {
        "y5": torch.tensor([1, -1, 0])}, ["r", "x5", "y5"]),
    "one row": (_y([lambda i: i % 2]), ["r", "x5", "x6"]),
    "parent observed": ({k: v for k, v in _y([lambda i: i % 2, lambda i: 1, lambda i: 0]).items() if k != "y4"}
                        | {"x4": torch.tensor([0, 1, 2])}, ["r", "x5", "y4"]),
}
PARAMS = ["cpds.r.logits", "cpds.x4.logits", "cpds.x5.logits", "cpds.x6.logits", "cpds.y5.logits"]


def _jacobians(query: _Query, names):
    params = {f"bn.{n}": t.detach().clone() for n, t in query.bn.named_parameters() if n in names}
    assert len(params) == len(names)

    def f(p):
        return functional_call(query, p, ())

    return f, params, jacfwd(f)(params), jacrev(f)(params)


def _check(query: _Query, names) -> None:
    f, params, fwd, rev = _jacobians(query, names)
    assert max(j.abs().max() for j in rev.values()) > 1e-2  # the derivatives asked for are not all zero
    for n in params:
        torch.testing.assert_close(fwd[n], rev[n], rtol=1e-9, atol=1e-12, msg=n)
    g = torch.Generator().manual_seed(2)
    v = {n: torch.randn(t.shape, dtype=t.dtype, generator=g) for n, t in params.items()}
    expected = sum((rev[n] * v[n]).sum(tuple(range(-v[n].dim(), 0))) for n in params)
    with forward_ad.dual_level():
        out = f({n: forward_ad.make_dual(params[n], v[n]) for n in params})
        primal, tangent = forward_ad.unpack_dual(out)
    assert not out.requires_grad  # no graph where none was asked for
    assert tangent is not None
    torch.testing.assert_close(tangent, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(primal, f(params), rtol=0, atol=0)


@pytest.mark.parametrize("prob", [True, False], ids=["prob", "log"])
@pytest.mark.parametrize("case", list(CASES))
def test_jacfwd_of_the_posterior_equals_jacrev(case, prob):
    evidence, names = CASES[case]
    with in_space(prob):
        _check(_Query(_tree(), names, evidence), PARAMS)


def test_jacfwd_under_no_grad_of_rows_redone_in_log_space():
    """Row 1's evidence (every leaf at probability 1e-30) is below float64's probability floor: answered again,
    alone, in log space; a dual under ``torch.no_grad()`` keeps its tangent in both."""
    bn = _tree()
    for i in range(K):
        bn.cpds[f"y{i}"].logits.data[:, 1] = bn.cpds[f"y{i}"].logits.data[:, 0] - 69.0
    query = _Query(bn, ["r", "x5"], _y([lambda i: i % 2 * 0, lambda i: 1]))
    with torch.no_grad():
        _check(query, ["cpds.r.logits", "cpds.x5.logits", "cpds.y3.logits"])


def test_jacfwd_with_the_workspace_reverse_pass(monkeypatch):
    """Where a plain query runs its reverse pass by hand (every intermediate "large"), a forward-mode one is
    differentiated by autograd."""
    from hybridpgm.graphs import reverse_pass

    monkeypatch.setattr(reverse_pass, "LARGE", 1)
    evidence, names = CASES["indicators and a likelihood"]
    _check(_Query(_tree(), names, evidence), PARAMS)


def test_jacfwd_of_rows_in_chunks(monkeypatch):
    from hybridpgm.infer import bn_contract

    monkeypatch.setattr(bn_contract, "ROW_CHUNK_BYTES", {"cpu": 1})  # one row per contraction
    evidence, names = CASES["indicators and a likelihood"]
    _check(_Query(_tree(), names, evidence), PARAMS)


def test_jacfwd_through_neural_and_linear_gaussian_cpds():
    """A neural node's factor (a context input: a row dim) and a linear-Gaussian density (``g`` observed) carry
    the tangents of their parameters; ``n`` is read off its own factor."""
    evidence = _y([lambda i: i % 2, lambda i: 1 - i % 2, lambda i: 0]) | {
        "c": torch.tensor([[0.5], [-1.0], [2.0]], dtype=D), "g": torch.tensor([0.3, 1.5, -0.2], dtype=D)}
    _check(_Query(_tree(extra=True), ["n", "x7", "r"], evidence),
           ["cpds.n.net.weight", "cpds.n.net.bias", "cpds.g.bias", "cpds.g.log_scale", "cpds.x7.logits"])
