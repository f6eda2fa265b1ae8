"""Editing ``bn.cpds`` as a ModuleDict (``bn.cpds[name] = cpd``, ``del``, ``update``, ``pop``, ``clear``, ...):
checked as ``BayesNet.add`` is, and never answered with the replaced CPD.

Before, such an edit bypassed ``add``: every query kept answering from the memo of the old CPDs (their tables,
order and parent/child index), and a conflicting CPD (a cycle, a cardinality its child's table does not fit) was
accepted silently."""

import copy
import io
import pickle

import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError, EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

WET = [[0.9, 0.1], [0.2, 0.8]]
SOFT = {"wet": Likelihood(torch.tensor([[0.3, 0.7], [0.6, 0.4]]))}


def _net(rain=(0.8, 0.2), wet=WET, states=False):
    bn = BayesNet()
    bn.add("rain", cpd.Table(list(rain)), states=["no", "yes"] if states else None)
    bn.add("wet", cpd.Table(wet, ["rain"]))
    return bn


def _answers(bn):
    """Every query kind, cached after a first call: hard and soft posteriors, evidence, MAP, scores, samples."""
    return {"posterior": bn.posterior("rain", {"wet": torch.tensor([0, 1])}),
            "soft": bn.posterior("rain", SOFT), "log_evidence": bn.log_evidence({"wet": torch.tensor([0, 1])}),
            "log_evidence_soft": bn.log_evidence(SOFT), "map": bn.map({"wet": torch.tensor([0, 1])})["rain"],
            "log_prob": bn.log_prob({"rain": torch.tensor([0, 1]), "wet": torch.tensor([1, 1])}),
            "sample": bn.sample(64, evidence={"wet": 1}, generator=torch.Generator().manual_seed(3))["rain"],
            "order": bn.topological_order}


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for k in want:
        if torch.is_tensor(want[k]):
            assert torch.equal(got[k], want[k]), k
        else:
            assert got[k] == want[k], k


ROUTES = {
    "setitem": lambda bn, name, c: bn.cpds.__setitem__(name, c),
    "update": lambda bn, name, c: bn.cpds.update({name: c}),
    "update_pairs": lambda bn, name, c: bn.cpds.update([(name, c)]),
    "setattr": lambda bn, name, c: setattr(bn.cpds, name, c),
    "add_module": lambda bn, name, c: bn.cpds.add_module(name, c),
    "assign_all": lambda bn, name, c: setattr(bn, "cpds", {**dict(bn.cpds.items()), name: c}),
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_replaced_cpd_answers_every_query(route):
    """After the replacement, every query answers exactly as a network declared with the new CPD does."""
    bn = _net()
    before = _answers(bn)
    ROUTES[route](bn, "rain", cpd.Table([0.1, 0.9]))
    want = _answers(_net(rain=(0.1, 0.9)))
    assert not torch.equal(want["posterior"], before["posterior"])
    _assert_same(_answers(bn), want)
    assert [n for n, _ in bn.named_parameters()] == ["cpds.rain.logits", "cpds.wet.logits"]


def test_a_replaced_neural_cpd_answers_with_its_own_network():
    torch.manual_seed(0)
    bn = _net()
    bn.posterior("rain", {"wet": 1})
    new = cpd.Neural(torch.nn.Linear(2, 2), ["rain"], 2)
    bn.cpds["wet"] = new
    ref = BayesNet()
    ref.add("rain", cpd.Table([0.8, 0.2]))
    ref.add("wet", new)
    assert torch.equal(bn.posterior("rain", {"wet": 1}), ref.posterior("rain", {"wet": 1}))
    assert torch.equal(bn.posterior("rain", SOFT), ref.posterior("rain", SOFT))


def test_a_new_node_set_by_assignment_is_added():
    bn = _net()
    bn.posterior("rain", {"wet": 1})
    bn.cpds["cloud"] = cpd.Table([0.5, 0.5])
    assert bn.topological_order == ["rain", "wet", "cloud"] and bn.nodes == ["rain", "wet", "cloud"]
    assert set(bn.map({"wet": 1})) == {"rain", "wet", "cloud"}
    with pytest.raises(ModelSpecError, match="node 'wet' is already declared|cardinality"):
        bn.add("wet", cpd.Table([0.5, 0.5]))


def test_parent_and_child_changed_together_in_one_update():
    """A cardinality change that the child's new table fits is accepted when both come in one update."""
    bn = _net()
    bn.posterior("rain", {"wet": 1})
    wet3 = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    bn.cpds.update({"rain": cpd.Table([0.2, 0.3, 0.5]), "wet": cpd.Table(wet3, ["rain"])})
    _assert_same(_answers(bn) | {"soft": None}, _answers(_net((0.2, 0.3, 0.5), wet3)) | {"soft": None})


@pytest.mark.parametrize("route", ["del", "pop", "delattr", "clear", "assign_all"])
def test_removed_nodes_are_gone_from_every_query(route):
    bn = _net()
    _answers(bn)
    {"del": lambda: bn.cpds.__delitem__("wet"), "pop": lambda: bn.cpds.pop("wet"),
     "delattr": lambda: delattr(bn.cpds, "wet"), "clear": bn.cpds.clear,
     "assign_all": lambda: setattr(bn, "cpds", {"rain": bn.cpds["rain"]})}[route]()
    for query in (lambda: bn.posterior("rain", {"wet": 1}), lambda: bn.log_evidence(SOFT),
                  lambda: bn.sample(3, evidence={"wet": 1})):
        with pytest.raises(EvidenceError, match="unknown variable 'wet'"):
            query()
    assert "wet" not in bn.topological_order
    if route != "clear":
        torch.testing.assert_close(bn.posterior("rain"), torch.tensor([0.8, 0.2]), rtol=0, atol=1e-7)
    bn.cpds["wet"] = cpd.Table(WET, ["rain"]) if route != "clear" else cpd.Table([0.5, 0.5])
    assert "wet" in bn.topological_order


def test_a_removed_parent_is_waited_for_and_then_bound_again():
    bn = _net()
    bn.posterior("rain", {"wet": 1})
    del bn.cpds["rain"]
    with pytest.raises(ModelSpecError, match=r"node 'wet' has unknown parent\(s\) \['rain'\]"):
        bn.posterior("wet")
    with pytest.raises(ModelSpecError, match="cardinality 3"):  # the waiting child's table fits two states only
        bn.add("rain", cpd.Table([0.2, 0.3, 0.5]))
    bn.add("rain", cpd.Table([0.1, 0.9]))
    _assert_same(_answers(bn), _answers(_net(rain=(0.1, 0.9))))


REFUSED = {
    "child's cardinality": (lambda bn: bn.cpds.__setitem__("rain", cpd.Table([0.2, 0.3, 0.5])),
                            r"setting node\(s\) \['rain'\] \(cardinality \[3\]\) conflicts with their child: node "
                            r"'wet'"),
    "cycle": (lambda bn: bn.cpds.__setitem__("rain", cpd.Table(WET, ["wet"])),
              "setting node 'rain' creates the cycle rain -> wet -> rain"),
    "own parent": (lambda bn: bn.cpds.__setitem__("rain", cpd.Table(WET, ["rain"])), "cannot be its own parent"),
    "table for its parents": (lambda bn: bn.cpds.__setitem__("wet", cpd.Table([0.5, 0.5], ["rain"])), "wet"),
    "not a CPD": (lambda bn: bn.cpds.__setitem__("wet", torch.nn.Linear(2, 2)), "node 'wet': expected a CPD"),
    "None": (lambda bn: setattr(bn.cpds, "wet", None), "node 'wet': expected a CPD, got NoneType"),
    "reserved name": (lambda bn: bn.cpds.update({"keys": cpd.Table([0.5, 0.5]), "x": cpd.Table([0.5, 0.5])}),
                      "node name 'keys' is reserved"),
    "dotted name": (lambda bn: bn.cpds.update({"a.b": cpd.Table([0.5, 0.5]), "x": cpd.Table([0.5, 0.5])}),
                    "without '.'"),
    "state names": (lambda bn: bn.cpds.__setitem__("rain", cpd.Table([0.2, 0.3, 0.5])),
                    r"node 'rain' has the state names \['no', 'yes'\].*cardinality 3.*del bn.cpds\['rain'\]"),
    "atomic update": (lambda bn: bn.cpds.update({"rain": cpd.Table([0.1, 0.9]), "wet": cpd.Table(WET, ["wet"])}),
                      "cannot be its own parent"),
    "not a mapping": (lambda bn: setattr(bn, "cpds", [cpd.Table([0.5, 0.5])]), "must be a mapping"),
    "delete the map": (lambda bn: delattr(bn, "cpds"), "cannot be deleted"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_edit_changes_nothing(case):
    edit, match = REFUSED[case]
    bn = _net(states=case == "state names")
    before = _answers(bn)
    bindings = [(c, c.node, dict(c.parent_cards)) for c in bn.cpds.values()]
    with pytest.raises(ModelSpecError, match=match):
        edit(bn)
    assert [(c, c.node, dict(c.parent_cards)) for c in bn.cpds.values()] == bindings
    _assert_same(_answers(bn), before)
    assert bn.nodes == ["rain", "wet"]


def test_deleting_an_undeclared_node_is_a_key_error():
    bn = _net()
    with pytest.raises(KeyError, match="'snow' is not declared"):
        del bn.cpds["snow"]


def test_state_names_follow_the_nodes():
    """A replaced node of the same cardinality keeps its state names; a removed one loses them."""
    bn = _net(states=True)
    bn.cpds["rain"] = cpd.Table([0.1, 0.9])
    assert torch.equal(bn.posterior("wet", {"rain": "yes"}), _net(rain=(0.1, 0.9)).posterior("wet", {"rain": 1}))
    del bn.cpds["wet"]
    del bn.cpds["rain"]
    assert bn.state_names == {}
    bn.add("rain", cpd.Table([0.2, 0.3, 0.5]), states=["a", "b", "c"])
    assert bn.posterior("rain").shape == (3,)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "save"])
def test_a_copied_network_checks_and_forgets_its_own_edits(how, tmp_path):
    """A copy (deep copy, pickle, hybridpgm.save/load) has a map of its own, with the same state-dict keys; an
    edit of the copy's map is checked and answered by the copy, and leaves the original as it was."""
    bn = _net()
    before = _answers(bn)
    if how == "deepcopy":
        other = copy.deepcopy(bn)
    elif how == "pickle":
        other = pickle.loads(pickle.dumps(bn))
    else:
        hybridpgm.save(bn, tmp_path / "bn.pt")
        other = hybridpgm.load(tmp_path / "bn.pt")
    assert list(other.state_dict()) == list(bn.state_dict()) == ["cpds.rain.logits", "cpds.rain.support",
                                                                  "cpds.wet.logits", "cpds.wet.support"]
    _answers(other)
    other.cpds["rain"] = cpd.Table([0.1, 0.9])
    _assert_same(_answers(other), _answers(_net(rain=(0.1, 0.9))))
    _assert_same(_answers(bn), before)
    with pytest.raises(ModelSpecError, match="conflicts with their child"):
        other.cpds["rain"] = cpd.Table([0.2, 0.3, 0.5])


def test_a_network_pickled_with_a_plain_module_dict_is_checked_once_loaded():
    """A pickle of a version whose map was a plain ``torch.nn.ModuleDict`` (rebuilt here by swapping the class)
    loads with a checked map."""
    bn = _net()
    bn.cpds.__class__ = torch.nn.ModuleDict
    bn.cpds.__dict__.pop("_CPDDict__owners", None)
    buf = io.BytesIO()
    torch.save(bn, buf)
    buf.seek(0)
    other = torch.load(buf, weights_only=False)
    other.posterior("rain", {"wet": 1})
    other.cpds["rain"] = cpd.Table([0.1, 0.9])
    assert torch.equal(other.posterior("rain", {"wet": 1}), _net(rain=(0.1, 0.9)).posterior("rain", {"wet": 1}))


def test_module_methods_still_work_on_an_edited_network():
    """Guard (passes before the fix too): ``double``, ``to``, ``train``/``eval`` and ``named_modules`` on a network
    whose map was edited."""
    bn = _net()
    bn.cpds["rain"] = cpd.Table([0.1, 0.9])
    bn = bn.double()
    assert bn.posterior("rain", {"wet": 1}).dtype == torch.float64
    bn.to(torch.float32).train().eval()
    assert [n for n, _ in bn.named_modules()] == ["", "cpds", "cpds.rain", "cpds.wet"]
    torch.testing.assert_close(bn.posterior("rain", {"wet": 1}),
                               _net(rain=(0.1, 0.9)).posterior("rain", {"wet": 1}), rtol=0, atol=0)


def test_a_compiled_evidence_table_notices_a_replaced_cpd():
    bn = _net()
    table = bn.compile_evidence(["wet"])
    bn.cpds["rain"] = cpd.Table([0.1, 0.9])
    with pytest.raises(ConfigError, match="the network changed after its evidence table"):
        table.posterior("rain", {"wet": torch.tensor([1])})


def test_setting_a_node_to_the_cpd_it_has_changes_nothing():
    """Found by a review: ``bn.cpds[v] = bn.cpds[v]`` (nothing changed) cleared every cache and so retired every
    evidence table ("the network changed"); setting the CPDs a node has is no edit now."""
    bn = _net()
    table = bn.compile_evidence(["wet"])
    want = table.posterior("rain", {"wet": torch.tensor([1])})
    bn.cpds["rain"] = bn.cpds["rain"]
    bn.cpds.update({"rain": bn.cpds["rain"], "wet": bn.cpds["wet"]})
    torch.testing.assert_close(table.posterior("rain", {"wet": torch.tensor([1])}), want, rtol=0, atol=0)


def test_a_standalone_copy_of_the_map_is_a_plain_module_dict():
    """Guard (passes before the fix too): a deep copy of the map alone belongs to no network, and edits it as a
    ``torch.nn.ModuleDict`` would, leaving the network alone."""
    bn = _net()
    cpds = copy.deepcopy(bn.cpds)
    cpds["extra"] = torch.nn.Linear(1, 1)
    del cpds["rain"]
    assert list(cpds) == ["wet", "extra"] and bn.nodes == ["rain", "wet"]


def test_replacing_a_cpd_by_one_of_the_same_shape_builds_no_graph_index(monkeypatch):
    """Found by a review: every replacement through ``bn.cpds`` rebuilt the network's graph index twice (two
    ``DagIndex`` of all nodes), so swapping every table of an ``N``-node network one by one was ``O(N^2)`` (16 ms an
    edit at 5000 nodes); a CPD of the same parents and cardinality changes no graph, and now builds none, while a
    change of parents still rebuilds it and answers as before."""
    from hybridpgm.graphs import bn_cpds

    bn = _net()
    _answers(bn)  # every query cached
    built = []
    real = bn_cpds.DagIndex
    monkeypatch.setattr(bn_cpds, "DagIndex", lambda *a, **k: built.append(1) or real(*a, **k))
    bn.cpds["wet"] = cpd.Table(torch.tensor([[0.5, 0.5], [0.1, 0.9]]), ["rain"])
    bn.cpds["rain"] = cpd.Table(torch.tensor([0.6, 0.4]))
    assert built == []
    want = _net(rain=(0.6, 0.4), wet=((0.5, 0.5), (0.1, 0.9)))
    _assert_same(_answers(bn), _answers(want))
    with pytest.raises(ModelSpecError, match="wet"):  # rows that do not fit the parent: refused, nothing changed
        bn.cpds["wet"] = cpd.Table(torch.tensor([[0.5, 0.5], [0.1, 0.9], [0.3, 0.7]]), ["rain"])
    _assert_same(_answers(bn), _answers(want))
    bn.cpds["wet"] = cpd.Table(torch.tensor([0.3, 0.7]))  # no parent now: the graph changes
    assert built


@pytest.mark.parametrize("route", [lambda bn: bn.cpds.__setitem__("new", None),
                                   lambda bn: bn.cpds.update({"new": None})], ids=["setitem", "update"])
def test_none_for_a_new_node_is_refused(route):
    """Found by a review: the no-op of setting a node to the CPD it has read a missing node as ``None`` and so
    accepted ``bn.cpds["new"] = None`` silently; it is refused as before."""
    bn = _net()
    with pytest.raises(ModelSpecError, match="expected a CPD, got NoneType"):
        route(bn)
    assert list(bn.cpds) == ["rain", "wet"]
