"""Neural CPDs: log-tables from a network, the dry run at declaration, leading batch dims."""

import pytest
import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def test_neural_table_shapes_and_values():
    torch.manual_seed(0)
    net = torch.nn.Linear(2 + 3 + 1, 4)
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([0.2, 0.3, 0.5]))
    bn.add("y", cpd.LinearGaussian(0.0))
    bn.add("c", cpd.Neural(net, ["a", "b", "y"], 4))
    c = bn.cpds["c"]
    assert c.discrete_parents == ("a", "b") and c.inputs == ("y",) and c.is_batched
    y = torch.tensor([0.5, -1.0])
    lt = c.log_table({"y": y})
    assert lt.shape == (2, 2, 3, 4)
    x = torch.cat([torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]), y[1:]])  # a=1, b=2, y=-1
    torch.testing.assert_close(lt[1, 1, 2], net(x).log_softmax(-1))
    with pytest.raises(EvidenceError, match="'y'"):
        c.log_table({})


def test_neural_declaration_is_checked_by_a_dry_run():
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="node 'b'.*2 features"):
        bn.add("b", cpd.Neural(torch.nn.Linear(5, 3), ["a"], 3))
    with pytest.raises(ModelSpecError, match="node 'b'.*outputs 4 logits"):
        bn.add("b", cpd.Neural(torch.nn.Linear(2, 4), ["a"], 3))
    with pytest.raises(ModelSpecError, match="cardinality"):
        cpd.Neural(torch.nn.Linear(2, 4), ["a"], 0)


def test_linear_gaussian_and_neural_keep_every_batch_dim_of_a_continuous_parent():
    """Values of a continuous parent of shape [S, N] (what Predictive(parallel=True) gives) make tables with the
    leading dims [S, N], each slice the table of that slice's values.  Before, [S, N] was read as N = S rows of
    N features: a wrong mean table, or an error."""
    bn = BayesNet()
    bn.add("D", cpd.Table([0.4, 0.6]))
    bn.add("X", cpd.LinearGaussian())
    bn.add("Y", cpd.LinearGaussian(bias=[0.5, -0.5], weight=[[1.5], [-2.0]], scale=[0.3, 0.2], parents=["D", "X"]))
    torch.manual_seed(0)
    bn.add("E", cpd.Neural(torch.nn.Linear(3, 3), ["D", "X"], cardinality=3))
    x = torch.randn(4, 5)  # [S, N]
    for node, extra in (("Y", ()), ("E", (3,))):
        c = bn.cpds[node]
        table = c.mean_table({"X": x}) if node == "Y" else c.log_table({"X": x})
        assert table.shape == (4, 5, 2, *extra)
        for s in range(4):
            one = c.mean_table({"X": x[s]}) if node == "Y" else c.log_table({"X": x[s]})
            torch.testing.assert_close(table[s], one)
    dens = bn.cpds["Y"].log_density(x + 1, {"X": x})
    assert dens.shape == (4, 5, 2)
    torch.testing.assert_close(dens[2], bn.cpds["Y"].log_density(x[2] + 1, {"X": x[2]}))


def test_neural_broadcasts_a_context_input_over_the_batch_dims_of_a_continuous_parent():
    torch.manual_seed(0)
    bn = BayesNet().add("X", cpd.LinearGaussian())
    bn.add("E", cpd.Neural(torch.nn.Linear(3, 2), ["X"], cardinality=2, context=["u"]))
    x, u = torch.randn(4, 5), torch.randn(5, 2)  # parent [S, N], context [N, d]
    table = bn.cpds["E"].log_table({"X": x, "u": u})
    assert table.shape == (4, 5, 2)
    for s in range(4):
        torch.testing.assert_close(table[s], bn.cpds["E"].log_table({"X": x[s], "u": u}))
    with pytest.raises(EvidenceError, match="node 'E'.*do not broadcast"):
        bn.cpds["E"].log_table({"X": x, "u": torch.randn(3, 2)})
