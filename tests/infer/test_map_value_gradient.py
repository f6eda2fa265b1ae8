"""The MAP value of :func:`hybridpgm.infer.exact.map_assignment` (``return_log_prob=True``) as a differentiable
quantity: its gradient is that of :math:`\\log p(x^*, e)` at the returned assignment (found by an audit: it was
returned detached, and ``.backward()`` raised torch's "does not require grad")."""

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import Likelihood


def _network():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table(torch.softmax(torch.randn(3), -1).double()))
    bn.add("b", cpd.Table(torch.softmax(torch.randn(3, 2), -1).double(), ["a"]))
    bn.add("c", cpd.Table(torch.softmax(torch.randn(2, 4), -1).double(), ["b"]))
    bn.add("d", cpd.Table(torch.softmax(torch.randn(3, 4, 2), -1).double(), ["a", "c"]))
    return bn


@pytest.mark.parametrize("evidence", [None, {"d": torch.tensor([0, 1, 1])},
                                      {"d": torch.tensor([0, -1, 1]), "a": torch.tensor([-1, 2, 0])}],
                         ids=["none", "hard", "partial"])
def test_the_map_value_has_the_gradient_of_the_log_joint_at_the_map_assignment(evidence):
    bn = _network()
    params = [p for p in bn.parameters() if p.requires_grad]
    assert params
    assignment, value = bn.map(evidence, return_log_prob=True)
    assert value.requires_grad
    got = torch.autograd.grad(value.sum(), params, allow_unused=True)
    log_joint = bn.log_prob({v: assignment[v].reshape(-1) for v in bn.nodes})
    torch.testing.assert_close(value.detach().reshape(-1), log_joint.detach(), rtol=1e-12, atol=1e-12)
    want = torch.autograd.grad(log_joint.sum(), params, allow_unused=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g if g is not None else torch.zeros_like(w), w if w is not None
                                   else torch.zeros_like(g), rtol=1e-12, atol=1e-12)


def test_the_map_value_reaches_a_soft_evidence_likelihood():
    """:math:`\\max_x \\log p(x) \\lambda(x_d)`: its derivative in :math:`\\lambda_k` is :math:`1 / \\lambda_k` at
    the MAP state :math:`k = x_d^*` and 0 elsewhere."""
    bn = _network()
    lik = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    assignment, value = bn.map({"d": Likelihood(lik)}, return_log_prob=True)
    (grad,) = torch.autograd.grad(value, lik)
    k = int(assignment["d"])
    want = torch.zeros(2, dtype=torch.float64)
    want[k] = 1 / lik[k].detach()
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


def test_under_no_grad_the_map_value_has_no_graph():
    """Guard: a query under ``torch.no_grad()`` (and in inference mode) builds no graph."""
    bn = _network()
    with torch.no_grad():
        _, value = bn.map(None, return_log_prob=True)
    assert not value.requires_grad
    with torch.inference_mode():
        _, value = bn.map(None, return_log_prob=True)
    assert not value.requires_grad


# -- forward mode: a tangent needs no requires_grad (found by an audit: jacfwd gave 0, a dual's tangent 0) --------
class _MapValue(torch.nn.Module):
    def __init__(self, bn, evidence):
        super().__init__()
        self.bn, self.evidence = bn, evidence

    def forward(self):
        return self.bn.map(self.evidence, return_log_prob=True)[1]


@pytest.mark.parametrize("evidence", [None, {"d": torch.tensor([0, 1, 1])},
                                      {"d": torch.tensor([0, -1, 1]), "a": torch.tensor([-1, 2, 0])}],
                         ids=["none", "hard", "partial"])
def test_the_map_value_has_the_forward_mode_derivative_of_reverse_mode(evidence):
    from torch.func import functional_call, jacfwd, jacrev

    query = _MapValue(_network().requires_grad_(False), evidence)
    params = {f"bn.{n}": p.detach().clone() for n, p in query.bn.named_parameters()}

    def f(p):
        return functional_call(query, p, ())

    fwd, rev = jacfwd(f)(params), jacrev(f)(params)
    assert max(j.abs().max() for j in rev.values()) > 0.1
    for n in params:
        torch.testing.assert_close(fwd[n], rev[n], rtol=1e-12, atol=1e-12, msg=n)
    g = torch.Generator().manual_seed(0)
    v = {n: torch.randn(t.shape, dtype=t.dtype, generator=g) for n, t in params.items()}
    expected = sum((rev[n] * v[n]).sum(tuple(range(-v[n].dim(), 0))) for n in params)
    for grad_mode in (True, False):  # forward mode ignores grad mode: the tangent reaches the value in both
        with torch.set_grad_enabled(grad_mode), torch.autograd.forward_ad.dual_level():
            out = f({n: torch.autograd.forward_ad.make_dual(params[n], v[n]) for n in params})
            tangent = torch.autograd.forward_ad.unpack_dual(out).tangent
        assert not out.requires_grad
        assert tangent is not None
        torch.testing.assert_close(tangent, expected, rtol=1e-12, atol=1e-12)



@pytest.mark.parametrize("evidence", [{"d": torch.tensor([0, 1, 1])},
                                      {"d": Likelihood(torch.tensor([[0.3, 0.9], [1e-3, 2e-3]], dtype=torch.float64)),
                                       "a": torch.tensor([-1, 2])}],
                         ids=["hard", "soft"])
def test_the_max_sum_pass_carries_no_tangent_and_the_value_is_unchanged(evidence, monkeypatch):
    """The max-sum contraction only finds the assignment (its tangent was thrown away with the detached maximum;
    under ``jacfwd`` it ran once per tangent direction: found by session 38): it gets tangent-free operands, and
    the value and its tangent (a ``forward_ad`` dual, ``jvp``) are still reverse mode's."""
    from torch.autograd import forward_ad
    from torch.func import functional_call, jacrev, jvp

    from hybridpgm.infer import bn_map_rows

    seen = []
    contract = bn_map_rows.contract

    def spy(bn, ev, tensors, *args, **kwargs):
        seen.append([forward_ad.unpack_dual(t).tangent is not None for t in tensors])
        return contract(bn, ev, tensors, *args, **kwargs)

    monkeypatch.setattr(bn_map_rows, "contract", spy)
    query = _MapValue(_network().requires_grad_(False), evidence)
    params = {f"bn.{n}": p.detach().clone() for n, p in query.bn.named_parameters()}

    def f(p):
        return functional_call(query, p, ())

    g = torch.Generator().manual_seed(1)
    v = {n: torch.randn(t.shape, dtype=t.dtype, generator=g) for n, t in params.items()}
    rev = jacrev(f)(params)
    expected = sum((rev[n] * v[n]).sum(tuple(range(-v[n].dim(), 0))) for n in params)
    assert expected.abs().max() > 0.1
    plain = f(params)
    seen.clear()
    with forward_ad.dual_level():
        out = f({n: forward_ad.make_dual(params[n], v[n]) for n in params})
        value, tangent = forward_ad.unpack_dual(out)
    assert len(seen) == 1 and seen[0] and not any(seen[0])
    torch.testing.assert_close(value, plain, rtol=0, atol=0)
    torch.testing.assert_close(tangent, expected, rtol=1e-12, atol=1e-12)
    value, tangent = jvp(f, (params,), (v,))
    torch.testing.assert_close(value, plain, rtol=0, atol=0)
    torch.testing.assert_close(tangent, expected, rtol=1e-12, atol=1e-12)
