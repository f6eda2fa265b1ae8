"""BayesNet.add refuses the node names that torch.nn.ModuleDict (which holds the CPDs) reserves, with a
ModelSpecError naming the node (hybridpgm/graphs/bayes_net.py).  Found by a fuzzing audit: a node named ``type``,
``train``, ``eval`` ... raised torch's raw ``KeyError: "attribute 'type' already exists"``."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

_AUDITED = ["type", "train", "eval", "float", "keys", "values", "items", "update", "training"]


@pytest.mark.parametrize("name", _AUDITED + ["to", "parameters", "children", "forward", "T_destination"])
def test_a_reserved_node_name_is_refused_naming_the_node(name):
    bn = BayesNet().add("rain", cpd.Table([0.8, 0.2]))
    with pytest.raises(ModelSpecError, match=rf"^node name '{name}' is reserved: BayesNet holds its CPDs in a "
                                             rf"torch.nn.ModuleDict, of which '{name}' is an attribute \(\w+\); "
                                             rf"rename the node, e.g. '{name}_'$"):
        bn.add(name, cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["rain"]))
    assert bn.nodes == ["rain"]  # the refused call changed nothing: the corrected one follows
    bn.add(f"{name}_", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["rain"]))
    assert bn.nodes == ["rain", f"{name}_"] and bn.posterior(f"{name}_").shape == (2,)


def test_a_reserved_name_in_the_constructor_is_refused():
    with pytest.raises(ModelSpecError, match=r"^node name 'eval' is reserved"):
        BayesNet({"eval": cpd.Table([0.5, 0.5])})


def test_every_name_the_module_dict_accepts_is_accepted():
    """Guard (passes before and after): names near the reserved ones, and a node named as BayesNet's own
    attribute, are ordinary node names."""
    names = ["Type", "types", "type_", "requires_grad", "cpds", "nodes", "state_names"]
    bn = BayesNet()
    for name in names:
        bn.add(name, cpd.Table([0.5, 0.5]))
    assert bn.nodes == names and not hasattr(torch.nn.ModuleDict(), "requires_grad")
