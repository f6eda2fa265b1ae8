"""The index tensors a MarkovNet's compile keeps (hybridpgm.graphs.mrf_compile) after ``.data =`` replacements.

Found by an audit: the kept ``[F, k]`` variables of a factor group were keyed on the version counters of the
network's scope buffers and of the kept tensor alone.  ``.data =`` moves no version counter, so a scope buffer
replaced so was compiled to the old scopes, and ``variables.data = other`` on one compiled graph (which hands out
the kept tensor) reached every later compile of the network.  Both are keyed on
hybridpgm.tensor_tracking.value_key now (version, data pointer, shape, strides, dtype), the entry holding the
storages it read."""

import pytest
import torch

from hybridpgm.graphs import MarkovNet


def _net() -> MarkovNet:
    m = MarkovNet({"a": 2, "b": 2, "c": 2})
    m.add_factors("e", [["a", "b"], ["c", "a"]], torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(1)))
    return m


@pytest.mark.parametrize("replacement", ["other", "transpose"])
@pytest.mark.parametrize("method", ["exact", "bp", "mean_field"])
def test_replacing_a_compiled_graph_s_variables_leaves_the_network(method, replacement):
    expected = _net().log_partition(method)
    m = _net()
    variables = m.factor_graph().groups[0].variables
    variables.data = torch.tensor([[0, 1], [1, 2]]) if replacement == "other" else variables.t()
    assert m.factor_graph().groups[0].variables.tolist() == [[0, 1], [2, 0]]  # before: the replacement's
    assert torch.equal(m.log_partition(method), expected)


@pytest.mark.parametrize("replacement", ["other", "transpose"])
def test_a_scope_buffer_replaced_by_data_is_compiled_as_it_is(replacement):
    """A compile gives what it gives uncached: the scope buffer's values (score reads them too)."""
    m = _net()
    m.factor_graph()  # the group's variables kept
    scope = m._scope_0
    scope.data = torch.tensor([[0, 1], [1, 2]]) if replacement == "other" else scope.t()
    assert m.factor_graph().groups[0].variables.tolist() == scope.tolist()  # before: [[0, 1], [2, 0]]


def test_an_unchanged_network_compiles_to_the_same_kept_tensor():
    """The cache still hits: the structures the engines plan per ``variables`` tensor are built once."""
    m = _net()
    assert m.factor_graph().groups[0].variables is m.factor_graph().groups[0].variables
