"""The kernels of a pairwise contraction step: probability-space steps as one batched matmul, log-space steps
with exact gradients."""

import copy
import math

import pytest
import torch

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


@pytest.mark.parametrize("c", [300.0, 460.0, 600.0])
def test_log_space_second_derivatives_are_exact_where_a_shifted_sum_is_tiny(c):
    """Found by an audit: the same step with the maxima ``c`` apart (shifted sum about :math:`e^{-c}`, above the
    redo's threshold) had exact gradients, but autograd differentiated :class:`LogOfSum`'s :math:`g / x` into
    :math:`(g / x) / x`, infinite once :math:`x^2` underflows (``c`` = 460, 600): the Hessian was NaN.  Now
    against ``torch.logsumexp`` to 1e-14 (by autograd and by ``torch.func.jacrev`` twice), and ``gradgradcheck``
    (third derivatives) passes; a zero sum still gives zero derivatives of every order."""
    plan = ContractionPlan([("k",), ("k",)], (), {"k": 3})
    x0 = torch.tensor([0.0, -c, -c + 0.5], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([-c, 0.0, 0.2], dtype=torch.float64, requires_grad=True)

    def step(x, y):
        return plan([x, y], "log")

    def ref(x, y):
        return torch.logsumexp(x + y, 0)

    for got, want in zip(torch.autograd.functional.hessian(step, (x0, y0)),
                         torch.autograd.functional.hessian(ref, (x0, y0))):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-14)
    assert torch.autograd.gradgradcheck(step, (x0, y0))
    # and under torch.func (LogOfSum defines setup_context: a Function without it is refused by the transforms)
    by_func = torch.func.jacrev(torch.func.jacrev(step))(x0.detach(), y0.detach())
    torch.testing.assert_close(by_func, torch.autograd.functional.hessian(lambda x: ref(x, y0), x0), rtol=0, atol=1e-14)
    inf = float("-inf")
    x = torch.tensor([0.0, inf, inf], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([inf, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(plan([x, y], "log"), [x], create_graph=True)
    (hx,) = torch.autograd.grad(gx.sum(), [x], allow_unused=True)
    assert torch.equal(gx, torch.zeros(3, dtype=torch.float64)) and (hx is None or not hx.any())



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
