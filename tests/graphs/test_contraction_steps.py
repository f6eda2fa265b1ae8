"""The kernels of a pairwise contraction step: probability-space steps as one batched matmul, log-space steps
with exact gradients."""

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.graphs.contraction import ContractionPlan

N = "rows"


@pytest.mark.parametrize("seed", range(6))
def test_probability_steps_equal_torch_einsum(seed):
    """The batched-matmul pairwise steps (summed-alone dims, outer products, shared row dims) against
    ``torch.einsum`` of the whole equation, values and gradients."""
    g = torch.Generator().manual_seed(seed)
    names = ["a", "b", "c", "d", "e"]
    sizes = {N: 3, **{x: int(torch.randint(2, 4, (), generator=g)) for x in names}}
    dims = [(N,)]
    for _ in range(5):
        k = int(torch.randint(1, 4, (), generator=g))
        pick = [names[i] for i in torch.randperm(5, generator=g)[:k].tolist()]
        dims.append(tuple(([N] if torch.rand((), generator=g) < 0.5 else []) + pick))
    out = (N, "c") if any("c" in d for d in dims) else (N,)
    ops = [torch.rand(*(sizes[x] for x in d), generator=g, dtype=torch.double, requires_grad=True) for d in dims]
    sym = {x: chr(ord("a") + i) for i, x in enumerate([N] + names)}
    eq = ",".join("".join(sym[x] for x in d) for d in dims) + "->" + "".join(sym[x] for x in out)
    ref = torch.einsum(eq, *ops)
    got = ContractionPlan(dims, out, sizes)(ops, "prob")
    torch.testing.assert_close(got, ref)
    w = torch.rand(ref.shape, generator=g, dtype=torch.double)
    for a, b in zip(torch.autograd.grad((got * w).sum(), ops), torch.autograd.grad((ref * w).sum(), ops)):
        torch.testing.assert_close(a, b)


def test_log_space_gradients_are_exact_where_a_shifted_sum_is_tiny():
    """Operands whose maxima disagree: the shifted sum of ``k,k->`` is 2 e^-400, far under float64's eps, where
    Pyro's ``safe_log`` would scale the gradient by e^-400 / eps; the posterior weights [0.5, 0.5] come out, and
    a zero sum (an impossible configuration) gives -inf with a zero gradient, not NaN."""
    plan = ContractionPlan([("k",), ("k",)], (), {"k": 2})
    x = torch.tensor([0.0, -400.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([-400.0, 0.0], dtype=torch.float64, requires_grad=True)
    out = plan([x, y], "log")
    gx, gy = torch.autograd.grad(out, [x, y])
    assert torch.allclose(out, torch.logsumexp(x + y, 0), rtol=1e-15)
    assert torch.allclose(gx, torch.tensor([0.5, 0.5], dtype=torch.float64), rtol=1e-14) and torch.equal(gx, gy)
    inf = float("-inf")
    x = torch.tensor([0.0, inf], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([inf, 0.0], dtype=torch.float64, requires_grad=True)
    out = plan([x, y], "log")
    (gx,) = torch.autograd.grad(out, [x])
    assert out.item() == inf and torch.equal(gx, torch.zeros(2, dtype=torch.float64))



def test_a_log_step_whose_operands_peak_on_different_terms_is_exact():
    """Found by an audit: each operand shifted by its own maximum, so operands peaking on different terms
    (-1000 on a = 1 against -1000 on a = 0) gave a shifted sum of 0 and a step of -inf; the entries that
    underflow are redone as a log-sum-exp of the broadcast sum (values and gradients)."""
    a = torch.tensor([[0.0, -1000.0], [-3.0, -1002.0]], dtype=torch.double, requires_grad=True)  # [i, k]
    b = torch.tensor([[-1000.0, 5.0], [0.0, -2.0]], dtype=torch.double, requires_grad=True)  # [k, j]
    plan = ContractionPlan([("i", "k"), ("k", "j")], ("i", "j"), {"i": 2, "j": 2, "k": 2})
    got = plan([a, b], "log")
    ref = (a[:, :, None] + b[None]).logsumexp(1)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert bool(torch.isfinite(got).all())
    w = torch.tensor([[0.3, -1.2], [0.7, 2.0]], dtype=torch.double)
    ga, gb = torch.autograd.grad((got * w).sum(), [a, b])
    ra, rb = torch.autograd.grad(((a[:, :, None] + b[None]).logsumexp(1) * w).sum(), [a, b])
    torch.testing.assert_close(ga, ra, rtol=0, atol=1e-12)
    torch.testing.assert_close(gb, rb, rtol=0, atol=1e-12)
    impossible = plan([a.detach().masked_fill(torch.tensor([[True, True], [False, False]]), float("-inf")),
                       b.detach()], "log")
    assert torch.equal(impossible[0], torch.full((2,), float("-inf"), dtype=torch.double))


@pytest.mark.parametrize("dtype, scale", [(torch.float64, 500.0), (torch.float32, 90.0)])
def test_exact_mrf_queries_with_strongly_conflicting_factors_match_brute_force(dtype, scale):
    """The audit's models: log Z was -inf (three binary variables with -1000 'forbidden' entries on opposite
    states) or off by 550 nats (scale-500 random loopy factors; float32 from scale 90), marginals were zero and
    exact sampling said the evidence had probability zero."""
    from hybridpgm.graphs import MarkovNet
    from tests.graphs.mrf_brute_force import brute_force, random_mrf

    f1 = torch.tensor([[0.0, 0.0], [-1000.0, -1000.0]], dtype=torch.float64)
    f2 = torch.tensor([[-1000.0, -1000.0], [0.0, 0.0]], dtype=torch.float64)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2}).add_factor("f1", ["a", "b"], f1).add_factor("f2", ["a", "c"], f2)
    torch.testing.assert_close(mrf.log_partition(), torch.tensor(-1000 + 3 * math.log(2), dtype=torch.float64))
    torch.testing.assert_close(mrf.marginals()["a"], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert mrf.sample(3, method="exact")["a"].shape == (3,)
    for seed in range(3):
        model = random_mrf(seed, 6, num_factors=7, batch=(2,), scale=scale, dtype=dtype)
        want_z, want_marg = brute_force(copy.deepcopy(model).double(), batch_dims=1)  # the same tables, float64
        tol = 1e-9 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(model.log_partition().double(), want_z, rtol=tol, atol=0)
        got = model.marginals()
        for v in want_marg:
            torch.testing.assert_close(got[v].double(), want_marg[v], rtol=0, atol=1e3 * tol)


def _frustrated_triangle(neg, dtype):
    """Binary a, b, c told to differ pairwise by ``neg`` penalties, ab and bc stated twice: only (0,1,0) and (1,0,1)
    break a single constraint (ac), so p(a = 0) = p(a = 1) = 1/2 exactly and H = log 2."""
    from hybridpgm.graphs import MarkovNet

    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    differ = torch.tensor([[neg, 0.0], [0.0, neg]], dtype=dtype)
    for name, scope in (("ab", "ab"), ("bc", "bc"), ("ac", "ac"), ("ab2", "ab"), ("bc2", "bc")):
        mrf.add_factor(name, list(scope), differ)
    return mrf


@pytest.mark.parametrize("dtype, neg", [(torch.float32, -1e4), (torch.float32, -1e7), (torch.float32, -1e9),
                                        (torch.float64, -1e9), (torch.float64, -1e16)])
def test_exact_marginals_of_huge_forbidden_penalties_are_exact(dtype, neg):
    """Found by an audit: the redo of an underflowed step took ``torch.logsumexp``'s gradient
    :math:`e^{x - \\mathrm{lse}}` from a result rounded at the size of :math:`|\\log Z|`, so the marginals came out
    as :math:`e^{-\\text{roundoff}}` per state (float32 -1e7: [0.368, 0.368]; -1e9 and float64 -1e16: [1, 1])."""
    marg = _frustrated_triangle(neg, dtype).marginals("exact")
    for v in "abc":
        torch.testing.assert_close(marg[v].double(), torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype, neg", [(torch.float32, -1e4), (torch.float64, -1e9)])
def test_exact_entropy_of_huge_forbidden_penalties(dtype, neg):
    """The same audit: the entropy (:math:`\\log Z` minus the gradient of a tempered :math:`\\log Z`) was -1.43 at
    float32 -1e4 and -1.21 at float64 -1e9; now within the documented :math:`\\epsilon |\\log Z|` of log 2."""
    entropy = _frustrated_triangle(neg, dtype).distribution().entropy()
    assert abs(entropy.item() - math.log(2)) < 1e-3


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


class _LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an operation returns while it is active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


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
    with _LargestTensor() as seen:
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
