"""The cached contraction plan of the exact MRF queries (:mod:`hybridpgm.infer.mrf_plan`)."""

import re

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet, contraction, ising_grid
from hybridpgm.graphs.contraction import ContractionPlan
from hybridpgm.infer import mrf_plan
from tests.graphs.mrf_brute_force import brute_force


@pytest.fixture
def plans_built(monkeypatch):
    """``[(optimizer, plan)]`` of every :class:`ContractionPlan` made, with the structure caches emptied first."""
    built, real = [], ContractionPlan.__init__

    def spy(plan, dims, output, sizes, optimize="auto"):
        real(plan, dims, output, sizes, optimize)
        built.append((optimize, plan))

    monkeypatch.setattr(ContractionPlan, "__init__", spy)
    mrf_plan._STRUCTURES.clear()
    mrf_plan._TOO_COSTLY.clear()
    return built



def test_the_order_is_searched_once_per_structure(plans_built):
    """New potentials, evidence or batch sizes reuse the plan; another structure gets its own."""
    for J in (0.2, -0.4):
        ising_grid(3, 3, J).marginals("exact")
    batched = ising_grid(3, 3, torch.randn(5, 12, dtype=torch.float64))
    batched.log_partition("exact", evidence={"x_0_0": torch.tensor(1)})
    assert [o for o, _ in plans_built] == ["greedy"] and len(mrf_plan._STRUCTURES) == 1
    ising_grid(3, 4, 0.2).log_partition("exact")
    assert [o for o, _ in plans_built] == ["greedy", "greedy"] and len(mrf_plan._STRUCTURES) == 2


def test_an_expensive_contraction_also_gets_a_searched_order_and_keeps_the_better(plans_built, monkeypatch):
    """Above :data:`SEARCH_ABOVE` flops per model the 128-trial search runs too, and the order of fewer flops is
    the one used."""
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", 100.0)
    mrf = ising_grid(4, 4, 0.3)
    want, _ = brute_force(mrf)
    assert torch.allclose(mrf.log_partition("exact"), want, atol=1e-12)
    assert [o for o, _ in plans_built] == ["greedy", "auto"]
    best = min((p for _, p in plans_built), key=lambda p: p.opt_cost)
    assert mrf_plan._structure(mrf.factor_graph()).plan is best


def test_the_cheap_verdict_does_not_depend_on_a_search_having_run(monkeypatch):
    """Found by an audit: "auto" judged a structure not yet cached by its greedy order's flops and a cached one by
    the searched order's (cheaper), so an exact query run before switched a 19x19 grid's MAP from BP (score 284.9)
    to exact (513.4).  The verdict is the greedy order's either way: here a searched plan made free must not turn
    an expensive structure cheap."""
    mrf = ising_grid(4, 4, 0.3)
    fg = mrf.factor_graph()
    greedy = mrf_plan._structure(fg).greedy_flops
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", greedy / 2)
    mrf_plan._STRUCTURES.clear()
    mrf_plan._TOO_COSTLY.clear()
    assert mrf_plan._structure(fg, cheap_only=True) is None  # not yet cached: greedy flops over the limit
    s = mrf_plan._structure(fg)  # a full call caches it (searching an order)
    s.plan = ContractionPlan(*_free_plan_args(s))
    assert mrf_plan._flops(s.plan) <= greedy / 2 and mrf_plan._structure(fg, cheap_only=True) is None


def _free_plan_args(s):
    """A one-operand plan (0 flops) standing in for a cheaper searched order."""
    return [(mrf_plan._ROWS, 0)], (mrf_plan._ROWS,), {mrf_plan._ROWS: 1, 0: 2}, "greedy"


def test_unaries_are_folded_into_one_factor_each():
    """Every variable's unary joins the first factor holding it; a variable in no factor is an operand alone."""
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2, "lone": 3})
    mrf.add_factor("ab", ["a", "b"], torch.zeros(2, 3, dtype=torch.float64))
    mrf.add_factor("bc", ["b", "c"], torch.zeros(3, 2, dtype=torch.float64))
    s = mrf_plan._structure(mrf.factor_graph())
    # group 0 holds ab and bc: a folds at argument 0 of ab, b at argument 1 of ab, c at argument 1 of bc
    assert [r.tolist() for r in s.fold[0]] == [[0, 4], [1, 2]]
    assert s.alone == [3]
    assert len(s.plan.steps) == 2  # three operands (two factors, the lone unary)


def test_a_treewidth_beyond_the_contraction_raises_model_spec_error():
    """A complete graph of 60 variables needs a step over more dims than an einsum has letters."""
    names = [f"x{i}" for i in range(60)]
    mrf = MarkovNet({n: 2 for n in names})
    pairs = [[a, b] for i, a in enumerate(names) for b in names[i + 1:]]
    mrf.add_factors("all_pairs", pairs, torch.zeros(len(pairs), 2, 2))
    with pytest.raises(ModelSpecError, match=r"exact MRF inference over 60 variables: .*treewidth.*method='bp'"):
        mrf.log_partition("exact")


def test_a_grid_far_past_the_limit_is_refused_before_any_order_is_searched(monkeypatch):
    """Found by an audit: a grid too wide for exact contraction was refused only after opt_einsum's greedy search
    had planned the whole contraction (2 s at 64x64, 143 s at 128x128, unfinished after 17 minutes at 256x256).
    Fails before: one search here.  The min-degree bound refuses it first, naming the width, where it is over 1.5
    times the limit (review C: under that margin the greedy order decides, as it may be narrower)."""
    searched, search = [], contraction._search_path

    def spy(*args):
        searched.append(len(args[0]))
        return search(*args)

    monkeypatch.setattr(contraction, "_search_path", spy)
    mrf_plan._STRUCTURES.clear()
    with pytest.raises(ModelSpecError) as refused:
        ising_grid(100, 100, 0.3).log_partition("exact")
    assert searched == []
    assert re.search(r"over 10000 variables: the min-degree elimination order has a step joining 81 dims, far more "
                     r"than the 52 .*treewidth.*method='bp'", str(refused.value))


def test_a_model_whose_bound_is_just_past_the_limit_is_judged_by_the_greedy_order(monkeypatch):
    """Review C: the bound is an upper bound on the treewidth and counts one-state variables, so a model it puts
    just past the limit may have a greedy order within it (a 1,035-variable grid: bound 54, greedy 51): such a
    bound no longer refuses; the greedy order is built and judges."""
    built = []
    monkeypatch.setattr(mrf_plan, "_min_degree_width", lambda dims, shared, limit: 60)
    monkeypatch.setattr(mrf_plan, "ContractionPlan", lambda *args: built.append(args) or (_ for _ in ()).throw(
        NotImplementedError("the greedy order's verdict")))
    mrf_plan._STRUCTURES.clear()
    with pytest.raises(ModelSpecError, match="the greedy order's verdict"):
        ising_grid(3, 3, 0.3).log_partition("exact")
    assert len(built) == 1


def test_a_model_within_the_bound_is_still_refused_by_a_too_wide_greedy_order(monkeypatch):
    """The bound decides only when it is over the limit; under it, the greedy order's first too-wide step
    refuses as before."""
    monkeypatch.setattr(mrf_plan, "_min_degree_width", lambda dims, shared, limit: 0)
    mrf = _complete_graph(60)
    with pytest.raises(ModelSpecError, match=r"over 60 variables: a contraction step joins \d+ dims \(treewidth"):
        mrf.log_partition("exact")


def _complete_graph(n):
    names = [f"x{i}" for i in range(n)]
    mrf = MarkovNet({v: 2 for v in names})
    pairs = [[a, b] for i, a in enumerate(names) for b in names[i + 1:]]
    mrf.add_factors("all_pairs", pairs, torch.zeros(len(pairs), 2, 2))
    return mrf


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_the_min_degree_width_of_small_graphs(k):
    """A chain of ``k`` variables joins two of them and the rows per step; a clique of ``k`` all of them and the
    rows; a ``k`` by ``k`` grid at least ``k + 1`` variables in one step (its treewidth is ``k``); a scope wider
    than the limit is that wide whatever the order."""
    rows = mrf_plan._ROWS
    chain = [(rows, i, i + 1) for i in range(k - 1)]
    assert mrf_plan._min_degree_width(chain, rows, 52) == 3
    clique = [(rows, i, j) for i in range(k) for j in range(i + 1, k)]
    assert mrf_plan._min_degree_width(clique, rows, 52) == k + 1
    assert mrf_plan._min_degree_width(clique, rows, 3) == k + 1  # its first step is over the limit
    grid = [(rows,) + tuple(scope) for group in mrf_plan._host_scopes(ising_grid(k, k, 0.1).factor_graph())
            for scope in group]
    assert mrf_plan._min_degree_width(grid, rows, 52) >= k + 2  # no order does better than the treewidth
    assert mrf_plan._min_degree_width([(rows,) + tuple(range(60))], rows, 52) == 61
