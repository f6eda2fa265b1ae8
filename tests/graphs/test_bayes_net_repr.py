"""The repr of a BayesNet (hybridpgm/graphs/bayes_net_repr.py): every node of a small network, a summary of
constant size of a large one.

Carried audit item: ``repr(BayesNet)`` printed every node name, so it grew with the network without bound (1000
nodes: 9 KB for a notebook cell's last line)."""

import torch

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.graphs.bayes_net_repr import WHOLE
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _chain(n: int, prefix: str = "x") -> BayesNet:
    bn = BayesNet()
    for i in range(n):
        parents = [f"{prefix}{i - 1}"] if i else []
        bn.add(f"{prefix}{i}", cpd.Table(torch.full((2,) * len(parents) + (2,), 0.5, dtype=torch.float64), parents))
    return bn


def test_a_small_network_shows_every_node_as_before():
    assert repr(_chain(3)) == "BayesNet(nodes=['x0', 'x1', 'x2'])"
    assert repr(_chain(WHOLE)) == f"BayesNet(nodes={[f'x{i}' for i in range(WHOLE)]})"
    assert repr(BayesNet()) == "BayesNet(nodes=[])"


def test_a_large_network_is_summarised_in_constant_size():
    """Fails on the old code: the repr listed all 1000 (10000) names."""
    small, large = _chain(WHOLE + 1), _chain(1000)
    assert repr(large) == ("BayesNet(nodes=1000 ['x0', 'x1', 'x2', ..., 'x999'], edges=999, "
                           "cpds={'Table': 1000})")
    assert len(repr(_chain(10_000))) <= len(repr(small)) + 15  # 3 more digits in 4 counts and the last name
    assert "\n" not in repr(large)


def test_the_summary_counts_each_kind_of_cpd_and_cuts_long_names():
    bn = _chain(9, prefix="n" * 100)
    bn.add("y", cpd.LinearGaussian(torch.tensor([0.0, 3.0]), scale=1.0, parents=["n" * 100 + "8"]))
    text = repr(bn)
    assert text.startswith("BayesNet(nodes=10 [") and text.endswith("edges=9, cpds={'Table': 9, 'LinearGaussian': 1})")
    assert len(text) < 300 and "'y'" in text
