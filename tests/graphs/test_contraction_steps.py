"""The kernels of a pairwise contraction step: probability-space steps as one batched matmul, log-space steps
with exact gradients."""

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

