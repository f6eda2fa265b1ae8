"""The exact redo of a log-space step's underflowed entries (:mod:`hybridpgm.graphs.underflow_redo`):
brute-force values and gradients, no NaN, and the block budget
(:data:`~hybridpgm.graphs.contraction_steps.MAX_SUM_CHUNK_ELEMENTS`)."""

import math

import pytest
import torch

from hybridpgm.graphs.contraction import ContractionPlan
from hybridpgm.graphs.underflow_redo import redo_underflowed, shifted_logsumexp
from tests.graphs.largest_tensor import LargestTensor


@pytest.mark.parametrize("dtype, neg, noise", [(torch.float64, -1e9, 1.0), (torch.float64, -1e16, 0.0),
                                               (torch.float32, -1e9, 0.0), (torch.float32, -200.0, 1.0)])
def test_redone_log_steps_have_brute_force_gradients(monkeypatch, dtype, neg, noise):
    """Gradients of :math:`\\log Z` with respect to every operand (the factor marginals) of a frustrated triangle
    through steps that underflow and are redone, against enumeration: ``neg`` on the forbidden entries, random
    values of scale ``noise`` on the allowed ones.  The reference is computed apart from the penalty: the
    assignments of fewest violations weighted by :math:`e^{r(x)}`."""
    import hybridpgm.graphs.contraction_steps as steps

    redone = []
    original = steps._redo_underflowed

    def spy(equation, operands, summed, result):
        out = original(equation, operands, summed, result)
        redone.append(not torch.equal(out, result))  # some entry was computed again
        return out

    monkeypatch.setattr(steps, "_redo_underflowed", spy)
    g = torch.Generator().manual_seed(0)
    scopes = [("a", "b"), ("b", "c"), ("a", "c"), ("a", "b"), ("b", "c")]
    forbidden = torch.eye(2, dtype=torch.bool)
    small = [torch.randn(2, 2, generator=g, dtype=torch.float64).masked_fill(forbidden, 0.0) * noise for _ in scopes]
    ops = [(r + forbidden * neg).to(dtype).requires_grad_() for r in small]
    plan = ContractionPlan(scopes, (), {"a": 2, "b": 2, "c": 2})
    got = torch.autograd.grad(plan(ops, "log"), ops)
    assert any(redone)
    # enumeration: violations k(x) and the small part r(x) of every assignment
    x = torch.cartesian_prod(*[torch.arange(2)] * 3)
    pos = {"a": 0, "b": 1, "c": 2}
    k = sum(forbidden[x[:, pos[u]], x[:, pos[w]]].long() for u, w in scopes)
    r = sum(t[x[:, pos[u]], x[:, pos[w]]] for t, (u, w) in zip(small, scopes))
    p = torch.where(k == k.min(), r, torch.full_like(r, -math.inf)).softmax(0)
    for t, (u, w), grad in zip(small, scopes, got):
        want = torch.zeros(2, 2, dtype=torch.float64).index_put_((x[:, pos[u]], x[:, pos[w]]), p, accumulate=True)
        tol = 1e-6 if dtype == torch.float64 or noise == 0 else 1e-4
        torch.testing.assert_close(grad.double(), want, rtol=0, atol=tol)


def test_a_redone_entry_whose_terms_all_overflow_to_minus_inf_has_no_nan_gradient():
    """A redone entry (operands peaking on different terms) whose terms are finite but sum past float32's range
    on every term: -inf, with a zero gradient where ``torch.logsumexp`` of an all -inf row back-propagates NaN."""
    low = torch.finfo(torch.float32).min
    plan = ContractionPlan([("k",), ("k",)], (), {"k": 2})
    ops = [torch.tensor(v, requires_grad=True) for v in ([-2e38, low], [low, -2e38])]
    out = plan(ops, "log")
    grads = torch.autograd.grad(out, ops)
    assert out.item() == -math.inf
    assert all(torch.equal(g, torch.zeros(2)) for g in grads)


def _conflicting(g, o=3, a=4, c=5, b=6):
    """Operands of ``osac,osb->o`` peaking on different ``s`` (every shifted term underflows), one term
    impossible."""
    x = torch.randn(o, 2, a, c, generator=g, dtype=torch.float64)
    y = torch.randn(o, 2, b, generator=g, dtype=torch.float64)
    x[:, 1] -= 1000.0
    y[:, 0] -= 1000.0
    x[0, :, 0, 0] = -math.inf
    return x.requires_grad_(), y.requires_grad_()


@pytest.mark.parametrize("chunk", [1 << 20, 24, 16, 4, 1])
def test_redone_log_steps_stay_within_the_block_budget(monkeypatch, chunk):
    """The redo of underflowed entries forms at most max(|out|, MAX_SUM_CHUNK_ELEMENTS) terms at once (old code:
    the whole n |r| = 3 x 240 joined sum), with the values of the whole sum and the same first and second
    derivatives: chunks of entries (24, 16), the leading summed dims walked one configuration at a time (4, 1)."""
    from hybridpgm.graphs import contraction_steps as steps

    monkeypatch.setattr(steps, "MAX_SUM_CHUNK_ELEMENTS", chunk)
    eq, ins = "osac,osb->o", [tuple("osac"), tuple("osb")]
    x, y = _conflicting(torch.Generator().manual_seed(0))
    with LargestTensor() as seen:
        got = steps.log_einsum(eq, [x, y], steps.shift_plan(ins, tuple("o")))
    assert seen.largest <= max(3, chunk, x.numel())
    ref = (x[:, :, :, :, None] + y[:, :, None, None, :]).reshape(3, -1).logsumexp(-1)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    grads = torch.autograd.grad((got * w).sum(), [x, y], create_graph=True)
    grads_ref = torch.autograd.grad((ref * w).sum(), [x, y], create_graph=True)
    for u, v in zip(grads, grads_ref):
        torch.testing.assert_close(u, v)
    second = torch.autograd.grad(sum((u ** 2).sum() for u in grads), [x, y])
    second_ref = torch.autograd.grad(sum((v ** 2).sum() for v in grads_ref), [x, y])
    for u, v in zip(second, second_ref):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("budget", [1, 5, 24, 1 << 20])
def test_redo_underflowed_at_any_budget_gives_the_whole_log_sum_exp(budget):
    """:func:`redo_underflowed` called directly with its ``budget``: every underflowed entry (all of them here)
    equals the log-sum-exp of the whole broadcast sum, the impossible configuration included."""
    x, y = _conflicting(torch.Generator().manual_seed(1))
    eq = "osac,osb->o"
    summed = torch.zeros(3, dtype=torch.float64)  # every shifted sum underflowed
    result = torch.full((3,), -math.inf, dtype=torch.float64)
    got = redo_underflowed(eq, [x, y], summed, result, budget)
    ref = (x[:, :, :, :, None] + y[:, :, None, None, :]).reshape(3, -1).logsumexp(-1)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_shifted_logsumexp_is_reexported_by_the_contraction_steps():
    from hybridpgm.graphs import contraction_steps as steps

    assert steps.shifted_logsumexp is shifted_logsumexp and steps._shifted_logsumexp is shifted_logsumexp
    row = torch.tensor([[-1e9, -1e9 + 1.0], [-math.inf, -math.inf]], dtype=torch.float64, requires_grad=True)
    out = shifted_logsumexp(row)
    assert out[1].item() == -math.inf
    torch.testing.assert_close(out[0], torch.tensor(-1e9 + 1.0 + math.log1p(math.exp(-1.0)), dtype=torch.float64))
    (grad,) = torch.autograd.grad(out[0], row)
    assert not grad.isnan().any()
