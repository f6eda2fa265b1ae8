"""BayesNet.add refuses the node names that torch.nn.ModuleDict (which holds the CPDs) reserves, with a
ModelSpecError naming the node (hybridpgm/graphs/bayes_net.py).  Found by a fuzzing audit: a node named ``type``,
``train``, ``eval`` ... raised torch's raw ``KeyError: "attribute 'type' already exists"``.

The structure accessors (``parents``, ``child_nodes``, ``cardinality``) refuse a name that is not a node with an
EvidenceError naming the method, the name and the nodes, as ``posterior`` does; they raised a bare ``KeyError``
(``child_nodes`` returned ``[]``)."""

import re

import pytest
import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
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


@pytest.mark.parametrize("method", ["parents", "child_nodes", "cardinality"])
def test_an_unknown_node_is_refused_by_the_structure_accessors(method):
    bn = BayesNet().add("rain", cpd.Table([0.8, 0.2])).add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["rain"]))
    with pytest.raises(EvidenceError, match=rf"^BayesNet\.{method}: unknown node 'rian'; did you mean 'rain'\? "
                                            r"\(nodes: 'rain', 'wet'\)$"):
        getattr(bn, method)("rian")
    for bad in (3, None, ["rain"]):  # not a name at all (a list is not hashable): the same error, no TypeError
        with pytest.raises(EvidenceError, match=rf"^BayesNet\.{method}: unknown node {re.escape(repr(bad))} "):
            getattr(bn, method)(bad)
    assert issubclass(EvidenceError, ValueError)  # as posterior's unknown query: except ValueError catches it
    assert (bn.parents("wet"), bn.child_nodes("rain"), bn.cardinality("wet")) == (("rain",), ["wet"], 2)
    assert bn.child_nodes("wet") == []  # a known node without children is no error


def test_an_unknown_node_message_lists_a_few_of_many_nodes():
    bn = BayesNet()
    for i in range(30):
        bn.add(f"x{i}", cpd.Table([0.5, 0.5]))
    with pytest.raises(EvidenceError, match=r"^BayesNet\.cardinality: unknown node 'y'.*'x9' and 20 more\)$"):
        bn.cardinality("y")
