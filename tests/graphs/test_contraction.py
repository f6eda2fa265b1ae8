"""Contraction plans: the evidence-absorbing plan gives the plain plan's answers in every semiring."""

import os
from collections import OrderedDict

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


def _chain_dims(n):
    dims = [(f"v{i}", f"v{i + 1}") for i in range(n)] + [(N, "v0")]
    sizes = {f"v{i}": 3 for i in range(n + 1)}
    sizes[N] = 4
    return dims, sizes


def test_plan_search_is_repeatable_and_leaves_python_random_alone():
    import random

    dims, sizes = _chain_dims(20)  # over 12 operands: the random-greedy search
    random.seed(123)
    expected = random.random()
    random.seed(123)
    first = ContractionPlan(dims, (N,), sizes)
    assert random.random() == expected
    second = ContractionPlan(dims, (N,), sizes)
    assert [s[3] for s in first.steps] == [s[3] for s in second.steps] and first.opt_cost == second.opt_cost


_PLAN_IN_A_FRESH_PROCESS = """
from hybridpgm.graphs.contraction import ContractionPlan
grid = [(f"x{r}{c}", f"x{r}{c + 1}") for r in range(4) for c in range(3)]
grid += [(f"x{r}{c}", f"x{r + 1}{c}") for r in range(3) for c in range(4)]
for optimize in ("auto", "greedy"):
    for dims in (grid, grid[:10]):  # 24 operands (random-greedy search) and 10 (opt_einsum's choice)
        sizes = {d: 2 for ds in dims for d in ds}  # equal sizes: many ties for the search to break
        print([s[1:3] for s in ContractionPlan(dims, (), sizes, optimize).steps])
"""


def test_the_plan_is_the_same_in_every_process():
    # Python salts string hashes per process; a search over sets of strings breaks ties in a new order
    # each time, so it must not see the dim names
    import subprocess
    import sys

    plans = {subprocess.run([sys.executable, "-c", _PLAN_IN_A_FRESH_PROCESS], capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
             for seed in range(4)}
    assert len(plans) == 1 and next(iter(plans)).count("\n") == 4


def test_absorbing_plan_counts_the_flops_of_absorbed_groups():
    dims, ops, sizes = _problem(3)
    plan = AbsorbingPlan(dims, (N,), sizes, batch_dim=N)
    assert plan.groups
    parts = [plan.main] + [p for _, p in plan.groups]
    assert plan.opt_cost == sum(getattr(p, "opt_cost", 0) for p in parts) > getattr(plan.main, "opt_cost", 0)


def test_plan_cache_evaluates_sizes_only_for_a_new_plan():
    dims, ops, sizes = _problem(4)
    cache = PlanCache()
    calls = []

    def lazy():
        calls.append(1)
        return sizes

    a = cache.get(dims, (N,), lazy, batch_dim=N)
    b = cache.get(dims, (N,), lazy, batch_dim=N)
    assert a is b and len(calls) == 1
    greedy = cache.get(dims, (N,), lazy, batch_dim=N, optimize="greedy")  # the optimizer is part of the key
    assert greedy is not a and len(calls) == 2
    cache.memo["x"] = 1
    cache.clear()
    assert len(cache) == 0 and cache.memo == {}


class _EvictedAfterRead(dict):
    """A cache dict whose every read of a present key is followed by that key's eviction, as when another thread's
    ``popitem``/``clear`` runs between a cache's read and its update (the interleaving forced)."""

    def get(self, key, default=None):
        value = super().get(key, default)
        self.pop(key, None)
        return value


class _EvictedAfterReadOrdered(_EvictedAfterRead, OrderedDict):
    pass


def test_plan_cache_hit_survives_an_eviction_by_another_thread():
    """Fails before: ``get`` read the plan, then ``move_to_end`` of the key another thread had evicted: KeyError."""
    dims, ops, sizes = _problem(5)
    cache = PlanCache()
    first = cache.get(dims, (N,), sizes, batch_dim=N)
    cache._plans = _EvictedAfterReadOrdered(cache._plans)
    assert cache.get(dims, (N,), sizes, batch_dim=N) is first and cache.hits == 1
    assert len(cache) == 0  # evicted: the next query builds the plan again
    assert cache.get(dims, (N,), sizes, batch_dim=N) is not first and cache.misses == 2
