"""The hand-written reverse pass gives autograd's value and gradients, in a workspace reused across calls."""

import os
import threading

import pytest
import torch

from hybridpgm.graphs import reverse_pass
from hybridpgm.graphs.contraction import AbsorbingPlan, ContractionPlan
from hybridpgm.graphs.reverse_pass import Workspace, value_and_gradients

N = "rows"


def _random_problem(seed: int, n_vars: int = 7, n_factors: int = 9):
    """Random factors over a few variables (sizes 1-4, so some products are outer products), some with the
    row dim, plus per-row vectors (indicators) on three variables and the row anchor."""
    g = torch.Generator().manual_seed(seed)
    names = [f"x{i}" for i in range(n_vars)]
    sizes = {N: 6, **{v: int(torch.randint(1, 5, (1,), generator=g)) for v in names}}
    dims = []
    for _ in range(n_factors):
        k = int(torch.randint(1, 4, (1,), generator=g))
        chosen = [names[i] for i in torch.randperm(n_vars, generator=g)[:k].tolist()]
        dims.append(((N,) if torch.rand(1, generator=g) < 0.5 else ()) + tuple(chosen))
    dims += [(N, v) for v in names[:3]] + [(N,)]
    ops = [torch.rand(*(sizes[d] for d in ds), generator=g, dtype=torch.double) + 0.1 for ds in dims]
    return dims, ops, sizes


def _autograd(plan, ops, wrt):
    leaves = [t.clone().requires_grad_(i in wrt) for i, t in enumerate(ops)]
    z = plan(leaves, "prob")
    return z.detach(), torch.autograd.grad(z.sum(), [leaves[i] for i in wrt])


@pytest.fixture
def everything_in_the_workspace(monkeypatch):
    """Route every intermediate through the workspace, however small."""
    monkeypatch.setattr(reverse_pass, "LARGE", 0)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("absorbing", [False, True])
@pytest.mark.parametrize("output", [(N,), ("x1", N)])
def test_value_and_gradients_equal_autograd(seed, absorbing, output, everything_in_the_workspace):
    dims, ops, sizes = _random_problem(seed)
    if absorbing:
        plan = AbsorbingPlan(dims, output, sizes, batch_dim=N)
    else:
        plan = ContractionPlan(dims, output, sizes)
    wrt = [0, 3, len(dims) - 4, len(dims) - 2]  # two factors, two row vectors
    want_z, want_g = _autograd(plan, ops, wrt)
    workspace = Workspace()
    for _ in range(2):  # the second call runs in the workspace the first one sized
        z, grads = value_and_gradients(plan, ops, wrt, workspace)
        assert z.shape == want_z.shape
        assert torch.allclose(z, want_z, rtol=1e-12, atol=0)
        for got, want, i in zip(grads, want_g, wrt):
            assert got.shape == ops[i].shape
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-300)
    assert workspace.nbytes > 0


def test_results_do_not_share_the_workspace(everything_in_the_workspace):
    """A later call through the same workspace leaves an earlier call's answers as they were."""
    dims, ops, sizes = _random_problem(3)
    plan = ContractionPlan(dims, (N,), sizes)
    workspace = Workspace()
    wrt = [len(dims) - 4, len(dims) - 3]
    value_and_gradients(plan, ops, wrt, workspace)  # sizes the workspace
    z1, g1 = value_and_gradients(plan, ops, wrt, workspace)
    kept = [z1.clone()] + [g.clone() for g in g1]
    value_and_gradients(plan, [t * 2.0 for t in ops], wrt, workspace)
    for a, b in zip([z1, *g1], kept):
        assert torch.equal(a, b)


def test_a_single_operand_and_a_final_permutation():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(3, 4, 2, generator=g, dtype=torch.double)
    plan = ContractionPlan([(N, "a", "b")], ("b", N), {N: 3, "a": 4, "b": 2})
    want_z, (want_g,) = _autograd(plan, [t], [0])
    z, (got,) = value_and_gradients(plan, [t], [0], Workspace())
    assert torch.allclose(z, want_z) and z.shape == (2, 3)
    assert torch.allclose(got, want_g)


def test_a_busy_or_mismatched_workspace_is_left_alone(everything_in_the_workspace):
    dims, ops, sizes = _random_problem(5)
    plan = ContractionPlan(dims, (N,), sizes)
    wrt = [len(dims) - 4]
    want_z, (want_g,) = _autograd(plan, ops, wrt)
    workspace = Workspace()
    with workspace._lock:  # another thread's query holds it
        z, (got,) = value_and_gradients(plan, ops, wrt, workspace)
    assert workspace.nbytes == 0
    assert torch.allclose(z, want_z) and torch.allclose(got, want_g)
    value_and_gradients(plan, ops, wrt, workspace)
    held = workspace.nbytes
    assert held > 0
    z32, (g32,) = value_and_gradients(plan, [t.float() for t in ops], wrt, workspace)  # another dtype
    assert z32.dtype == torch.float32 and torch.allclose(z32.double(), want_z, rtol=1e-5)
    assert torch.allclose(g32.double(), want_g, rtol=1e-5)
    workspace.release()
    assert workspace.nbytes == 0


def test_concurrent_queries_share_one_workspace_safely(everything_in_the_workspace):
    dims, ops, sizes = _random_problem(7)
    plan = ContractionPlan(dims, (N,), sizes)
    wrt = [len(dims) - 4, len(dims) - 3]
    want_z, want_g = _autograd(plan, ops, wrt)
    workspace, failures = Workspace(), []

    def query():
        for _ in range(20):
            z, grads = value_and_gradients(plan, ops, wrt, workspace)
            if not (torch.allclose(z, want_z) and all(torch.allclose(a, b) for a, b in zip(grads, want_g))):
                failures.append(1)

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_copies_and_pickles_of_a_workspace_are_empty(everything_in_the_workspace):
    import copy
    import pickle

    dims, ops, sizes = _random_problem(1)
    workspace = Workspace()
    value_and_gradients(ContractionPlan(dims, (N,), sizes), ops, [0], workspace)
    assert workspace.nbytes > 0
    for other in (copy.deepcopy(workspace), pickle.loads(pickle.dumps(workspace))):
        assert isinstance(other, Workspace) and other.nbytes == 0 and other._lock is not workspace._lock


def test_the_workspace_stops_growing_at_its_limit(everything_in_the_workspace):
    dims, ops, sizes = _random_problem(2)
    plan = ContractionPlan(dims, (N,), sizes)
    want_z, want_g = _autograd(plan, ops, [0])
    unbounded = Workspace()
    value_and_gradients(plan, ops, [0], unbounded)
    small = Workspace(max_bytes=unbounded.nbytes // 3)
    for _ in range(2):  # the second call: part workspace, part fresh tensors
        z, (g,) = value_and_gradients(plan, ops, [0], small)
        assert torch.allclose(z, want_z) and torch.allclose(g, want_g[0])
    assert 0 < small.nbytes <= unbounded.nbytes // 3


def test_a_workspace_of_no_bytes_keeps_nothing(everything_in_the_workspace):
    dims, ops, sizes = _random_problem(4)
    plan = ContractionPlan(dims, (N,), sizes)
    want_z, want_g = _autograd(plan, ops, [0])
    workspace = Workspace(max_bytes=0)
    for _ in range(2):
        z, (g,) = value_and_gradients(plan, ops, [0], workspace)
        assert torch.allclose(z, want_z) and torch.allclose(g, want_g[0])
        assert workspace.nbytes == 0


def test_the_reverse_pass_applies_an_absorbing_plans_groups_through_absorb(monkeypatch):
    """The absorbed groups are applied in one place, :meth:`AbsorbingPlan.absorb`, by the forward contraction and
    by the hand-written reverse pass alike (before, ``reverse_pass._run`` repeated ``AbsorbingPlan.__call__``'s
    loop over the groups): both go through it once per call, with the same positions, and agree."""
    dims, ops, sizes = _random_problem(1)
    plan = AbsorbingPlan(dims, (N,), sizes, batch_dim=N)
    assert len(plan.groups) == 2
    seen = []
    absorb = AbsorbingPlan.absorb

    def counted(self, operands, contract):
        seen.append(len(operands))
        return absorb(self, operands, contract)

    monkeypatch.setattr(AbsorbingPlan, "absorb", counted)
    want = plan(ops, "prob")
    z, _ = value_and_gradients(plan, ops, [0])
    assert seen == [len(dims), len(dims)]
    assert torch.allclose(z, want, rtol=1e-12, atol=0)


def test_absorb_keeps_the_operands_no_group_holds_in_order_then_each_groups_result():
    """:meth:`AbsorbingPlan.absorb` over labels: each group's result is appended after the operands it does not
    hold, in order; a plan without its stored layout (pickled before it was stored) works it out alike."""
    dims, _, sizes = _random_problem(27)
    plan = AbsorbingPlan(dims, (N,), sizes, batch_dim=N)
    assert len(plan.groups) == 4
    labels = [f"o{i}" for i in range(len(dims))]
    want = list(labels)
    for group, sub in plan.groups:  # the rule, spelled out
        want = [t for i, t in enumerate(want) if i not in group] + [(sub, tuple(want[i] for i in group))]
    got = plan.absorb(labels, lambda sub, args: (sub, tuple(args)))
    assert got == want
    del plan.__dict__["_slots"]
    assert plan.absorb(labels, lambda sub, args: (sub, tuple(args))) == want


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_another_thread_queries_uses_the_workspace(everything_in_the_workspace):
    """Before, a child forked while another thread held a workspace's lock (a query under way) inherited the lock
    held by a thread it does not have: every query of the child found the workspace busy and allocated afresh."""
    from tests.forks import exit_code_of_fork_while_held

    dims, ops, sizes = _random_problem(3)
    plan = ContractionPlan(dims, (N,), sizes)
    want_z, want_g = _autograd(plan, ops, [0])
    workspace = Workspace()

    def child_query_runs_in_the_workspace():
        z, (grad,) = value_and_gradients(plan, ops, [0], workspace)
        return workspace.nbytes > 0 and torch.allclose(z, want_z) and torch.allclose(grad, want_g[0])

    assert exit_code_of_fork_while_held(lambda: workspace._lock, child_query_runs_in_the_workspace) == 0
    assert workspace.nbytes == 0  # the parent's workspace: untouched by the child
