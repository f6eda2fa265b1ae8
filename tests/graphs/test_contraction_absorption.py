"""Which variables an :class:`AbsorbingPlan` absorbs, in which order, and what building and replaying it costs.

Found by an audit of cost against size: the plan restarted its scan over every variable after each absorbed one
and rebuilt each variable's holders over all operands, :math:`O(n^3)` for a chain observed at its leaf (58 s to
plan an 800-node chain; a first MAP on an 800-node binary tree took 166 s), and every query rebuilt the operand
list once per group, :math:`n^2/2` list entries (19,900 at ``n = 200``).  The groups must stay those of the scan
(the qualifying variable first by name each time), which the reference below keeps.
"""

import random
import sys

import pytest

from hybridpgm.graphs import contraction
from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan

B = "\x00rows"


def _reference_groups(operand_dims, output_dims, batch_dim):
    """The scan the plan used before, kept as the definition: ``([(positions, group dims, new dims)], main dims)``."""
    dims = [tuple(d) for d in operand_dims]
    groups, out, changed = [], set(output_dims), True
    while changed:
        changed = False
        for v in sorted({d for ds in dims for d in ds} - out - {batch_dim}, key=str):
            holders = [i for i, ds in enumerate(dims) if v in ds]
            small = [i for i in holders if set(dims[i]) <= {v, batch_dim}]
            big = [i for i in holders if i not in small]
            if not small or len(big) > 1 or len(holders) < 2:
                continue
            group = big + small
            g_dims = [dims[i] for i in group]
            rest = tuple(d for d in (dims[big[0]] if big else ()) if d not in (v, batch_dim))
            new_dims = ((batch_dim,) if any(batch_dim in ds for ds in g_dims) else ()) + rest
            groups.append((tuple(group), g_dims, new_dims))
            dims = [ds for i, ds in enumerate(dims) if i not in group] + [new_dims]
            changed = True
            break
    return groups, dims


def _network(seed, shape, n):
    """Operand dims of a random network's exact query: its tables (some per row), evidence and query vectors (per
    row or not), in shuffled order, and the output dims (the rows and up to two query variables); names drawn at
    random so that their order says nothing of the structure (integers for some seeds: ``str`` order)."""
    rng = random.Random(seed)
    ids = rng.sample(range(10 * n), n)
    names = ids if seed % 4 == 3 else [f"v{i}" for i in ids]
    dims = []
    for i in range(n):
        if shape == "chain":
            parents = [i - 1] if i else []
        elif shape == "tree":
            parents = [rng.randrange(i)] if i else []
        else:
            parents = rng.sample(range(i), min(i, rng.randint(0, 3)))
        table = tuple(names[p] for p in parents) + (names[i],)
        dims.append(((B,) if rng.random() < 0.1 else ()) + table)
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            dims.append(rng.choice([(B, names[i]), (names[i],), (names[i], B)]))
    rng.shuffle(dims)
    output = (B,) + tuple(rng.sample(names, rng.randint(0, 2)))
    return dims, output, {**{v: 2 for v in names}, B: 3}


@pytest.mark.parametrize("shape", ["chain", "tree", "dag"])
@pytest.mark.parametrize("seed", range(8))
def test_the_groups_are_the_scans_groups_in_the_scans_order(shape, seed):
    """Same groups (positions in the list when each runs, dims), same order, same main plan as the reference."""
    dims, output, sizes = _network(seed, shape, 40)
    want, main_dims = _reference_groups(dims, output, B)
    plan = AbsorbingPlan(dims, output, sizes, "greedy", B)
    assert [g for g, _ in plan.groups] == [g for g, _, _ in want]
    for (_, sub), (_, g_dims, new_dims) in zip(plan.groups, want):
        assert sub.equation == ContractionPlan(g_dims, new_dims, sizes, "greedy").equation
    assert plan.main.equation == ContractionPlan(main_dims, output, sizes, "greedy").equation
    labels = [f"o{i}" for i in range(len(dims))]
    got = plan.absorb(labels, lambda sub, args: (sub.equation, tuple(args)))
    expect = list(labels)
    for (group, _), (_, sub) in zip(plan.groups, plan.groups):
        expect = [t for i, t in enumerate(expect) if i not in group] + [(sub.equation, tuple(expect[i] for i in group))]
    assert got == expect


def test_without_a_row_dim_a_chain_is_absorbed_from_its_root():
    """With no row dim, ``a``'s prior is a vector over ``a`` alone: ``a`` goes into ``b``'s table, then the result,
    a vector over ``b``, takes ``b`` into ``c``'s: the list left is the one operand over the output."""
    dims = [("a",), ("a", "b"), ("b", "c")]
    plan = AbsorbingPlan(dims, ("c",), {"a": 2, "b": 2, "c": 2}, "greedy", None)
    want, main_dims = _reference_groups(dims, ("c",), None)
    assert [g for g, _ in plan.groups] == [g for g, _, _ in want] == [(1, 0), (0, 1)] and main_dims == [("c",)]
    assert plan.absorb(["x", "y", "z"], lambda sub, args: tuple(args)) == [("z", ("y", "x"))]


def _chain(n):
    """A chain whose leaf is observed: every node is absorbed, one at a time, from either end (the audit's case).
    The names sort the middle first and the ends last, so each absorption is of the last name the scan reached."""
    name = [f"x{n - min(i, n - 1 - i):05d}_{i}" for i in range(n)]
    dims = [(name[0],)] + [(name[i - 1], name[i]) for i in range(1, n)] + [(B, name[n - 1])]
    return dims, {**{v: 2 for v in name}, B: 4}


def _lines_run(fn):
    """Python lines run by ``fn()`` in the absorbing plan's modules (a count of work, not a time)."""
    files = (contraction.__file__, contraction.__file__.replace("contraction.py", "absorption.py"))
    count, previous = [0], sys.gettrace()

    def trace(frame, event, arg):
        if frame.f_code.co_filename not in files:
            return None
        if event == "line":
            count[0] += 1
        return trace

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count[0]


@pytest.mark.parametrize("n", [60, 120])
def test_planning_a_chain_observed_at_its_leaf_runs_linear_work(n):
    """Fails before: the scan restarted after each of the ``n`` absorptions, over every variable, each rebuilding
    its holders over every operand (476,283 lines at ``n = 120``, 41,624 now); here under 500 per node, the ``n`` small
    group plans (of 2 operands each) included."""
    dims, sizes = _chain(n)
    plan = []
    lines = _lines_run(lambda: plan.append(AbsorbingPlan(dims, (B,), sizes, "greedy", B)))
    assert len(plan[0].groups) == n
    assert lines <= 500 * n, lines


def test_replaying_the_groups_runs_linear_work():
    """Fails before: :meth:`AbsorbingPlan.absorb` rebuilt the operand list per group, sum of the kept positions
    79,800 at ``n = 400`` (and the reverse pass did it again); now each slot is read once (about 11 lines per
    operand: 4,400 where it was 82,205)."""
    dims, sizes = _chain(400)
    plan = AbsorbingPlan(dims, (B,), sizes, "greedy", B)
    ops = list(range(len(dims)))
    lines = _lines_run(lambda: plan.absorb(ops, lambda sub, args: -1))
    assert lines <= 20 * len(dims), lines


def test_a_plan_pickled_without_its_slots_works_them_out_alike():
    """A plan from a network's plan cache pickled before the slots were stored replays its groups from their
    positions alone, with the same result."""
    dims, output, sizes = _network(5, "dag", 30)
    plan = AbsorbingPlan(dims, output, sizes, "greedy", B)
    assert len(plan.groups) >= 5
    labels = [f"o{i}" for i in range(len(dims))]
    want = plan.absorb(labels, lambda sub, args: (sub.equation, tuple(args)))
    del plan.__dict__["_slots"]
    assert plan.absorb(labels, lambda sub, args: (sub.equation, tuple(args))) == want
