"""Belief propagation on a factor graph built under a :mod:`torch.func` transform keeps nothing of the transform
(hybridpgm/infer/belief_propagation.py ``_binary_plan``, which asks hybridpgm/tensor_tracking.py ``unversioned``).

Carried audit item: the binary fast path remembers the index structure of the last graph it ran on, and decided
whether it may with ``t.is_inference()`` alone.  A graph whose ``valid`` and ``variables`` were made inside
``torch.func.grad`` (or ``jacrev``, ``vmap``) has the transform's wrappers there, dead once it returns; the plan
built from them (five wrapped index tensors) was kept by the ``BeliefPropagation`` object after the transform
returned, until its next call.  The answers were right; the plan was a leak of a finished transform's tensors.
"""

from __future__ import annotations

import gc

import pytest
import torch

from hybridpgm.graphs.factor_graph import FactorGraph, FactorGroup
from hybridpgm.infer.belief_propagation import BeliefPropagation

J = torch.tensor([[[[0.3, -0.2], [0.1, 0.4]]] * 4], dtype=torch.float64)  # [1, F=4, 2, 2]
UNARY = torch.tensor([[[0.1, -0.3], [0.2, 0.0], [-0.5, 0.4], [0.3, 0.3]]], dtype=torch.float64)  # [1, V=4, 2]


def _graph(unary: torch.Tensor) -> FactorGraph:
    """A 4-cycle of binary variables, its index tensors made here (inside the transform, where it is called)."""
    return FactorGraph(names=list("abcd"), cardinalities=torch.full((4,), 2), unary=unary,
                       valid=torch.ones(1, 4, 2, dtype=torch.bool),
                       groups=[FactorGroup(torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]]), J)])


def _wrapped_tensors_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects()
               if issubclass(type(o), torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(o))


@pytest.mark.parametrize("transform", [torch.func.grad, torch.func.jacrev])
def test_no_tensor_of_a_finished_transform_is_kept(transform):
    """Fails on the old code: the plan of the wrapped index tensors stayed in the BeliefPropagation object."""
    bp = BeliefPropagation(num_iters=30, tol=0)
    before = _wrapped_tensors_alive()
    got = transform(lambda u: bp(_graph(u)).log_z.sum())(UNARY)
    assert _wrapped_tensors_alive() == before
    u = UNARY.clone().requires_grad_()
    (want,) = torch.autograd.grad(bp(_graph(u)).log_z.sum(), u)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_plain_graph_is_still_remembered_and_reused_under_a_transform():
    """The plan of a graph of plain index tensors is kept (and stays usable under grad, twice)."""
    bp = BeliefPropagation(num_iters=30, tol=0)
    fg = _graph(UNARY)
    plan = bp._binary_plan(fg)
    assert plan is not None and bp._binary_plan(fg) is plan

    def f(u):
        return bp(FactorGraph(fg.names, fg.cardinalities, u, fg.valid, fg.groups)).log_z.sum()

    first, second = torch.func.grad(f)(UNARY), torch.func.grad(f)(UNARY)
    assert torch.equal(first, second)
