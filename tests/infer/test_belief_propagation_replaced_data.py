"""BP's plans after a graph's tensors are replaced by ``.data =``, which moves no version counter.

Found by an audit: BeliefPropagation remembered the binary fast path's plan for the last graph keyed on the
version counters of its ``valid`` mask and ``variables`` alone, and the plan cache under it
(hybridpgm.infer.structure_cache) did not key on strides, so ``variables.data = variables.t()`` (a square index:
the same storage, address and version) was planned as the old factors.  Both key on
hybridpgm.tensor_tracking.value_key now, holding the storages they read."""

import dataclasses

import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation


def _net() -> MarkovNet:
    net = MarkovNet({"a": 2, "b": 2, "c": 2})
    net.add_factors("e", [["a", "b"], ["c", "a"]], torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(1)))
    return net


def _with_variables(fg, variables):
    return dataclasses.replace(fg, groups=[dataclasses.replace(fg.groups[0], variables=variables)])


def test_a_mask_put_in_place_by_data_is_read_by_the_next_run():
    """``valid.data = clamped`` kept the memo of the unclamped graph: the binary fast path (nothing clamped) ran,
    and the evidence b = 1 was ignored (b's marginal [0.43, 0.57], not [0, 1])."""
    net, bp = _net(), BeliefPropagation(num_iters=30, tol=0.0)
    fg = net.factor_graph()
    bp(fg)  # the binary plan remembered for fg
    clamped = net.factor_graph({"b": torch.tensor(1)})
    fg.valid.data = clamped.valid
    torch.testing.assert_close(bp(fg).marginals, bp(clamped).marginals, rtol=0, atol=0)
    assert bp(fg).marginals[0, 1].tolist() == [0.0, 1.0]


def test_factors_transposed_in_place_of_their_data_are_planned_anew():
    """``variables.data = variables.t()``: the factors (a, b), (c, a) are (a, c), (b, a) now; BP ran the old plan,
    with b's and c's marginals swapped."""
    net, bp = _net(), BeliefPropagation(num_iters=30, tol=0.0)
    fg = net.factor_graph()
    bp(fg)
    variables = fg.groups[0].variables
    variables.data = variables.t()
    want = bp(_with_variables(fg, variables.clone()))
    torch.testing.assert_close(bp(fg).marginals, want.marginals, rtol=0, atol=0)  # the graph BP remembered
    # a new graph around the same tensor: the plan cache's entry of that tensor
    torch.testing.assert_close(bp(_with_variables(fg, variables)).marginals, want.marginals, rtol=0, atol=0)


def test_the_plan_cache_tells_a_transposed_tensor_from_the_one_planned():
    """The plan cache alone: a new graph (BP's memo misses) around the tensor planned, transposed since."""
    net, bp = _net(), BeliefPropagation(num_iters=30, tol=0.0)
    fg = net.factor_graph()
    variables = fg.groups[0].variables
    bp(_with_variables(fg, variables))  # planned: [[0, 1], [2, 0]]
    variables.data = variables.t()
    torch.testing.assert_close(bp(_with_variables(fg, variables)).marginals,
                               bp(_with_variables(fg, variables.clone())).marginals, rtol=0, atol=0)
