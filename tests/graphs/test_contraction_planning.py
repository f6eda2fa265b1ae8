"""Contraction planning: :class:`ContractionPlan` derives its steps by walking the searched path with its own
per-dim bookkeeping (no replay through ``opt_einsum.contract_path``), the steps, flop count and largest
intermediate are those ``contract_path`` lists for the same path, and a model too wide to contract is refused at
its first too-wide step, before the rest of the path is walked."""

import string

import opt_einsum
import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import MarkovNet, contraction, ising_grid, load_network
from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan
from hybridpgm.graphs.contraction_steps import pair_plan, shift_plan
from hybridpgm.infer import mrf_plan

LETTERS = 52  # the dims one step's einsum can name (a-z, A-Z)


def _reference(operand_dims, output_dims, sizes, path):
    """The plan of ``path`` as ``opt_einsum.contract_path`` lists its steps (the derivation the walk replaced):
    ``(steps, (opt_cost, largest_intermediate) or None, final permutation, refusal message or None)``."""
    names = sorted({d for dims in operand_dims for d in dims} | set(output_dims), key=str)
    sym = {d: opt_einsum.get_symbol(i) for i, d in enumerate(names)}
    back = {s: d for d, s in sym.items()}
    eq = ",".join("".join(sym[d] for d in dims) for dims in operand_dims)
    eq += "->" + "".join(sym[d] for d in output_dims)
    if len(operand_dims) == 1:
        contraction_list, costs = [((0,), None, eq, None, None)], None
    else:
        shapes = [tuple(sizes[d] for d in dims) for dims in operand_dims]
        _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=path)
        contraction_list, costs = info.contraction_list, (int(info.opt_cost), int(info.largest_intermediate))
    steps, current = [], [tuple(d) for d in operand_dims]
    for inds, _, einsum_str, _, _ in contraction_list:
        ins = [current.pop(i) for i in inds]
        out = tuple(back[s] for s in einsum_str.split("->")[1])
        local = sorted({d for dims in ins for d in dims}, key=str)
        if len(local) > LETTERS:
            return steps, costs, None, f"a contraction step joins {len(local)} dims (treewidth too large)"
        pair = None
        if len(ins) == 2:
            pair, out = pair_plan(ins, out, sizes)
        loc = {d: string.ascii_letters[i] for i, d in enumerate(local)}
        step_eq = ",".join("".join(loc[d] for d in dims) for dims in ins) + "->" + "".join(loc[d] for d in out)
        steps.append((tuple(inds), tuple(ins), out, step_eq, shift_plan(ins, out), pair))
        current.append(out)
    return steps, costs, tuple(current[0].index(d) for d in output_dims), None


@pytest.fixture
def built(monkeypatch):
    """Every :class:`ContractionPlan` built while the test runs, as ``(operand dims, output dims, sizes, searched
    path or None, the plan or the NotImplementedError that refused it)``."""
    record, paths = [], []
    search, init = contraction._search_path, ContractionPlan.__init__

    def searched(*args, **kwargs):
        paths.append(search(*args, **kwargs))
        return paths[-1]

    def construct(self, operand_dims, output_dims, sizes, optimize="auto"):
        paths.clear()
        entry = ([tuple(d) for d in operand_dims], tuple(output_dims), dict(sizes))
        try:
            init(self, operand_dims, output_dims, sizes, optimize)
        except NotImplementedError as error:
            record.append((*entry, paths[0] if paths else None, error))
            raise
        record.append((*entry, paths[0] if paths else None, self))

    monkeypatch.setattr(contraction, "_search_path", searched)
    monkeypatch.setattr(ContractionPlan, "__init__", construct)
    return record


def _assert_as_contract_path_lists(record, refused_allowed=False):
    """Each recorded plan has exactly the reference's steps (positions, dims, layouts, einsum equations, max
    shifts, matmul specs), flop count, largest intermediate and final permutation; each refusal the reference's
    message."""
    assert record
    for operand_dims, output_dims, sizes, path, plan in record:
        steps, costs, perm, refusal = _reference(operand_dims, output_dims, sizes, path)
        if isinstance(plan, NotImplementedError):
            assert refused_allowed and str(plan) == refusal
            continue
        assert refusal is None
        assert plan.steps == steps
        assert plan._final_perm == perm
        if costs is None:
            assert not hasattr(plan, "opt_cost") and not hasattr(plan, "largest_intermediate")
        else:
            assert (plan.opt_cost, plan.largest_intermediate) == costs
            assert type(plan.opt_cost) is int and type(plan.largest_intermediate) is int


@pytest.mark.parametrize("name", ["asia", "alarm", "hailfinder",  # water, barley: the same code, larger cliques
                                  pytest.param("water", marks=pytest.mark.slow),  # about 4x alarm's time
                                  pytest.param("barley", marks=pytest.mark.slow)])  # barley: about 10 s
def test_bayes_net_query_plans_are_the_steps_contract_path_lists(built, name):
    """Guard (passes before and after the walk replaced the replay): every plan the network's first queries build
    (split estimates, absorbed groups, main plans; mixed and single-pattern rows, a joint, MAP) and the plain
    plans over its families are the plans ``contract_path``'s step list gives."""
    torch.manual_seed(0)
    bn = load_network(name)
    nodes = bn.nodes
    ev = nodes[::3]
    sample = bn.sample(6)
    single = {v: sample[v] for v in ev}
    seen = torch.rand(6, len(ev)) < 0.5
    mixed = {v: torch.where(seen[:, j], sample[v], torch.full_like(sample[v], -1)) for j, v in enumerate(ev)}
    with torch.no_grad():
        bn.posterior(None, mixed)  # many patterns: split estimates, absorbing plans, the main plan
        bn.posterior([v for v in nodes if v not in ev][:3], {v: x[:1] for v, x in single.items()}, joint=True)
        bn.log_evidence(single)
        bn.map({v: x[:2] for v, x in single.items()})
    families = [(v, *bn.parents(v)) for v in nodes]
    cards = {v: bn.cardinality(v) for v in nodes}
    for optimize in ("greedy", "auto"):  # the plain plans over the network's families, to one node's marginal
        ContractionPlan(families, (nodes[-1],), cards, optimize)
    _assert_as_contract_path_lists(built)


def net_cards(scope, cards):
    return [cards[int(v[1:]) % 2] for v in scope]


def test_markov_net_plans_are_the_steps_contract_path_lists(built):
    """Guard (passes before and after the walk): the exact logZ and MAP plans of Ising grids and of random graphs
    of pairwise and triple factors are the plans ``contract_path``'s step list gives."""
    torch.manual_seed(1)
    for L in (3, 6, 9):
        ising_grid(L, L, coupling=0.3 * torch.randn(2 * L * (L - 1)), field=torch.randn(L * L)).log_partition()
    g = torch.Generator().manual_seed(2)
    for n, cards in ((12, (2, 3)), (20, (2, 4))):  # random graphs: pairwise and triple factors, mixed cardinalities
        net = MarkovNet({f"x{i}": cards[i % 2] for i in range(n)})
        for k in range(2 * n):
            scope = [f"x{i}" for i in torch.randperm(n, generator=g)[:2 + k % 2].tolist()]  # pairs and triples
            net.add_factor(f"f{k}", scope, torch.randn(*(net_cards(scope, cards)), generator=g))
        net.log_partition("exact")
        net.map_assignment(method="exact")
    _assert_as_contract_path_lists(built)


@pytest.mark.parametrize("optimize", ["greedy", "optimal", "dp", "branch-2", "auto"])
def test_small_plans_are_the_steps_contract_path_lists(built, optimize):
    """Guard (passes before and after the walk): one and two operands, outer products, a permuted output, and
    ``"dp"``'s one-operand steps (whose result keeps opt_einsum's order, unlike a pairwise step's matmul layout)
    under every optimizer, plain and evidence-absorbing."""
    sizes = {"a": 2, "b": 3, "c": 4, "d": 2, "e": 5, "n": 7}
    cases = [
        ([("a", "b")], ("b", "a")),  # one operand
        ([("a", "b"), ("b", "c")], ("c", "a")),  # two: no search
        ([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], ()),
        ([("n", "a"), ("a", "b", "c"), ("c", "d"), ("n", "d", "e"), ("e",), ("b",)], ("n", "b")),
        ([("a",), ("b",), ("c", "d"), ("d", "e")], ("e", "a", "c")),  # outer products
        ([("a", "b", "c"), ("c", "d"), ("d", "e")], ("a",)),  # "dp" first sums b and e: one-operand steps
        ([("b", "c", "a"), ("c", "d", "e"), ("e", "n")], ("n", "a", "d")),  # ... whose result keeps its order
    ]
    for dims, out in cases:
        ContractionPlan(dims, out, sizes, optimize)
        AbsorbingPlan(dims + [("n", "c")], ("n",) + tuple(d for d in out if d != "n"), sizes, optimize, "n")
    _assert_as_contract_path_lists(built)


def test_a_plan_walks_the_searched_path_without_replaying_it_through_contract_path(monkeypatch):
    """The steps come from the searched path alone: ``contract_path``, which re-forms the union of every remaining
    operand's indices at each step (quadratic in the operands), is not called while planning."""
    calls = []
    real = opt_einsum.contract_path
    monkeypatch.setattr(opt_einsum, "contract_path", lambda *a, **k: calls.append(1) or real(*a, **k))
    grid = [((r, c), (r, c + 1)) for r in range(5) for c in range(4)] + [((r, c), (r + 1, c)) for r in range(4)
                                                                          for c in range(5)]
    sizes = {d: 2 for dims in grid for d in dims}
    for optimize in ("greedy", "auto"):
        plan = ContractionPlan(grid, (), sizes, optimize)
        assert len(plan.steps) == len(grid) - 1
    assert calls == []


def _grid_edges(L):
    return [(f"x{r}_{c}", f"x{r}_{c + 1}") for r in range(L) for c in range(L - 1)] + \
        [(f"x{r}_{c}", f"x{r + 1}_{c}") for r in range(L - 1) for c in range(L)]


def test_a_too_wide_grid_is_refused_at_its_first_too_wide_step(monkeypatch):
    """A 40x40 grid's greedy path has a step joining 53 dims: the plan is refused there, with the message the
    full step list gives, after walking (costing) the steps up to it and none after it."""
    dims = _grid_edges(40)
    sizes = {d: 2 for ds in dims for d in ds}
    paths, costed = [], []
    search, flop_count = contraction._search_path, opt_einsum.helpers.flop_count

    def searched(*args, **kwargs):
        paths.append(search(*args, **kwargs))
        costed.clear()  # count the steps costed after the search
        return paths[-1]

    monkeypatch.setattr(contraction, "_search_path", searched)
    monkeypatch.setattr(opt_einsum.helpers, "flop_count", lambda *a: costed.append(1) or flop_count(*a))
    with pytest.raises(NotImplementedError) as refused:
        ContractionPlan(dims, (), sizes, "greedy")
    walked = len(costed)
    monkeypatch.undo()
    (path,) = paths
    steps, _, _, refusal = _reference(dims, (), sizes, path)
    assert str(refused.value) == refusal == "a contraction step joins 53 dims (treewidth too large)"
    assert walked == len(steps) + 1 < len(path)  # the steps before the wide one, and the wide one


def test_a_too_wide_ising_grid_is_refused_with_the_full_step_lists_message(built, monkeypatch):
    """Guard (passes before and after the walk): the exact logZ of a 40x40 Ising grid is refused with the message
    and width that ``contract_path``'s step list gives (the min-degree bound, which refuses this grid before any
    search, :func:`hybridpgm.infer.mrf_plan._min_degree_width`, left out to reach the greedy order's refusal)."""
    monkeypatch.setattr(mrf_plan, "_min_degree_width", lambda dims, shared, limit: 0)
    torch.manual_seed(3)
    g = ising_grid(40, 40, coupling=0.3 * torch.randn(2 * 40 * 39), field=torch.randn(1600))
    with pytest.raises(ModelSpecError, match=r"over 1600 variables: a contraction step joins 53 dims \(treewidth"):
        g.log_partition("exact")
    assert isinstance(built[-1][-1], NotImplementedError)
    _assert_as_contract_path_lists(built, refused_allowed=True)
