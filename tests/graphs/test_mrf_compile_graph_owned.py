"""A compiled FactorGraph does not share its index tensors with the network or its cache."""
import pytest
import torch

from hybridpgm.graphs import MarkovNet


def _net(families):
    m = MarkovNet({"a": 2, "b": 2, "c": 2})
    g = torch.Generator().manual_seed(1)
    if families == 1:
        m.add_factors("e", [["a", "b"], ["b", "c"]], torch.randn(2, 2, 2, generator=g))
    else:
        m.add_factor("ab", ["a", "b"], torch.randn(2, 2, generator=g))
        m.add_factor("bc", ["b", "c"], torch.randn(2, 2, generator=g))
    return m


@pytest.mark.parametrize("families", [1, 2])
@pytest.mark.parametrize("method", ["exact", "bp", "mean_field"])
def test_editing_a_compiled_graph_leaves_the_network(families, method):
    expected = _net(families).log_partition(method)
    m = _net(families)
    fg = m.factor_graph()
    fg.groups[0].variables[1] = torch.tensor([0, 2])  # the caller rewires their copy: factor 1 over (a, c)
    assert torch.equal(m.log_partition(method), expected)
