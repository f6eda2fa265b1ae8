"""Contraction plans: the evidence-absorbing plan gives the plain plan's answers in every semiring."""

import pytest
import torch

from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan, PlanCache

N = "rows"


def _problem(seed):
    """A chain a - b - c plus a leaf d under b, with per-row vectors on d (evidence) and c (query)."""
    g = torch.Generator().manual_seed(seed)
    sizes = {N: 5, "a": 2, "b": 3, "c": 2, "d": 4}
    dims = [("a",), ("a", "b"), ("b", "c"), ("b", "d"), (N, "d"), (N, "c"), (N,)]
    ops = [torch.rand(*(sizes[x] for x in ds), generator=g, dtype=torch.double) + 0.1 for ds in dims]
    return dims, ops, sizes


@pytest.mark.parametrize("semiring", ["prob", "log", "max"])
@pytest.mark.parametrize("output", [(N,), (N, "a"), (N, "b", "c")])
def test_absorbing_plan_equals_plain_plan(semiring, output):
    dims, ops, sizes = _problem(0)
    if semiring != "prob":
        ops = [t.log() for t in ops]
    plain = ContractionPlan(dims, output, sizes)(ops, semiring)
    plan = AbsorbingPlan(dims, output, sizes, batch_dim=N)
    assert plan.groups  # d is a leaf seen only through its table and a per-row vector
    got = plan(ops, semiring)
    assert got.shape == plain.shape
    assert torch.allclose(got, plain, atol=1e-12)


def test_absorbed_variables_are_leaves_with_row_vectors_only():
    dims, _, sizes = _problem(1)
    plan = AbsorbingPlan(dims, (N,), sizes, batch_dim=N)
    absorbed = [set().union(*[set(dims_) for dims_ in p.equation.split("->")[0].split(",")])
                for _, p in plan.groups]
    assert len(plan.groups) >= 2  # d (table + evidence), then c (table + query vector)
    kept = PlanCache(batch_dim=None).get(dims, (N,), sizes)
    assert isinstance(kept, ContractionPlan) and not isinstance(kept, AbsorbingPlan)
    assert isinstance(PlanCache().get(dims, (N,), sizes, batch_dim=N), AbsorbingPlan)
    assert all(len(a) >= 2 for a in absorbed)


def test_gradient_through_absorbed_group_gives_marginals():
    """d log Z / d lambda_c at lambda = 0 is p(c | e): unchanged by absorbing c's group first."""
    dims, ops, sizes = _problem(2)
    logs = [t.log() for t in ops]
    lam = torch.zeros(5, 2, dtype=torch.double, requires_grad=True)
    logs[5] = lam
    plain = ContractionPlan(dims, (N,), sizes)(logs, "log")
    (g_plain,) = torch.autograd.grad(plain.sum(), lam)
    absorbed = AbsorbingPlan(dims, (N,), sizes, batch_dim=N)(logs, "log")
    (g_abs,) = torch.autograd.grad(absorbed.sum(), lam)
    assert torch.allclose(g_abs, g_plain, atol=1e-12)
    assert torch.allclose(g_abs.sum(-1), torch.ones(5, dtype=torch.double))
