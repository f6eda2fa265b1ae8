"""MarkovNet's repr (hybridpgm/graphs/markov_net.py): whole for a small net, a summary for a large one."""

import torch

from hybridpgm.graphs import MarkovNet, ising_grid


def test_a_small_net_lists_its_variables_and_factors():
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], torch.zeros(2, 3))
    assert repr(mrf) == "MarkovNet(variables={'a': 2, 'b': 3}, factors=['ab'])"


def test_a_large_net_is_summarised_in_constant_size():
    """A 300 x 300 Ising grid printed all 90000 variables (1.37 MB)."""
    large = ising_grid(300, 300, 0.3)
    assert repr(large) == ("MarkovNet(variables=90000 ['x_0_0', 'x_0_1', 'x_0_2', ..., 'x_299_299'], "
                           "cardinalities={2}, factors=1 ['coupling'])")
    mixed = MarkovNet({f"v{i}": 2 + i % 3 for i in range(20)})
    for i in range(12):
        mixed.add_factor(f"f{i}", [f"v{i}"], torch.zeros(2 + i % 3))
    assert repr(mixed) == ("MarkovNet(variables=20 ['v0', 'v1', 'v2', ..., 'v19'], cardinalities={2, 3, 4}, "
                           "factors=12 ['f0', 'f1', 'f2', ..., 'f11'])")
