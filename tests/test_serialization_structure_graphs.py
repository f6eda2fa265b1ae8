"""A parameter or buffer registered by hand on a graph declared by ``add`` calls (a BayesNet, a MarkovNet, their
CPD map or table of potentials) is refused by save, naming it, and nothing is written
(hybridpgm/serialization_structure.py, ``record_declared``).  Before, save wrote the file and load failed on it
("Unexpected key(s) in state_dict: "extra""): the graphs recorded nothing to compare with.  A graph that was not
changed is still saved without being rebuilt."""

import copy

import pytest
import torch
from torch import nn

import hybridpgm
import hybridpgm.serialization
from hybridpgm.errors import CheckpointError, ModelSpecError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd


def _bn():
    return BayesNet({"rain": cpd.Table([0.8, 0.2]), "wet": cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"])})


def _bn_by_add_calls():
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.8, 0.2]))
    return bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"]))


def _mrf():
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3))
    mrf.add_factors("bc", [["b", "c"]], nn.Parameter(torch.randn(1, 3, 2)))
    return mrf.add_factor("neural", ["c"], nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))


def _extra_parameter(module, name="extra"):
    module.register_parameter(name, nn.Parameter(torch.zeros(2)))


HAND_MADE = {  # a graph, where an entry is registered by hand, and the entry's state-dict name
    "bn itself": (_bn_by_add_calls, lambda g: _extra_parameter(g), "extra"),
    "bn built by its constructor": (_bn, lambda g: g.register_buffer("extra", torch.zeros(2)), "extra"),
    "bn cpd map": (_bn, lambda g: g.cpds.register_buffer("extra", torch.zeros(2)), "cpds.extra"),
    "mrf itself": (_mrf, lambda g: _extra_parameter(g), "extra"),
    "mrf tables": (_mrf, lambda g: g.table_potentials.register_buffer("extra", torch.zeros(2)),
                   "table_potentials.extra"),
    "mrf neural potentials": (_mrf, lambda g: _extra_parameter(g.potentials), "potentials.extra"),
    "empty bn": (BayesNet, lambda g: _extra_parameter(g), "extra"),
}


@pytest.mark.parametrize("case", list(HAND_MADE))
def test_an_entry_registered_by_hand_on_a_graph_is_refused_at_save(case, tmp_path):
    make, change, entry = HAND_MADE[case]
    graph = make()
    change(graph)
    kind = type(graph).__name__
    with pytest.raises(CheckpointError, match=rf"cannot save {kind} to .*g\.pt.*: .*it holds '{entry}', which the "
                                              r"rebuilt model does not have.*serializable"):
        hybridpgm.save(graph, tmp_path / "g.pt")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def rebuilds(monkeypatch):
    """The number of models ``save`` has rebuilt to compare with (``load`` is not counted: it rebuilds anyway)."""
    calls = []
    build = hybridpgm.serialization._build
    monkeypatch.setattr(hybridpgm.serialization, "_build", lambda *args, **kwargs: calls.append(1) or build(
        *args, **kwargs))
    return calls


@pytest.mark.parametrize("make", [_bn, _bn_by_add_calls, _mrf], ids=["bn", "bn by add", "mrf"])
def test_an_unchanged_graph_its_copy_and_its_loaded_twin_save_without_a_rebuild(make, rebuilds, tmp_path):
    graph = make()
    hybridpgm.save(graph, tmp_path / "g.pt")
    hybridpgm.save(copy.deepcopy(graph), tmp_path / "copy.pt")
    assert not rebuilds
    back = hybridpgm.load(tmp_path / "g.pt")
    del rebuilds[:]
    hybridpgm.save(back, tmp_path / "again.pt")
    assert not rebuilds
    assert back.state_dict().keys() == graph.state_dict().keys()
    assert all(torch.equal(t, graph.state_dict()[k]) for k, t in back.state_dict().items())


def test_a_refused_add_leaves_the_record_as_it_was(rebuilds, tmp_path):
    """A refused declaration registers nothing, and records nothing: the graph still saves without a rebuild."""
    bn, mrf = _bn(), _mrf()
    with pytest.raises(ModelSpecError, match="'rain' is already declared"):
        bn.add("rain", cpd.Table([0.5, 0.5]))
    with pytest.raises(ModelSpecError, match="unknown|not a variable|'z'"):
        mrf.add_factor("az", ["a", "z"], torch.randn(2, 2))
    hybridpgm.save(bn, tmp_path / "bn.pt")
    hybridpgm.save(mrf, tmp_path / "mrf.pt")
    assert not rebuilds


def test_a_node_set_in_the_cpd_map_is_saved_and_loads(tmp_path):
    """A change the file carries (a CPD replaced through ``bn.cpds``, not ``add``) is not refused."""
    bn = _bn()
    bn.cpds["wet"] = cpd.Table([[0.6, 0.4], [0.3, 0.7]], parents=["rain"])
    back = hybridpgm.load(hybridpgm.save(bn, tmp_path / "bn.pt"))
    assert torch.allclose(back.posterior("rain", {"wet": 1}), bn.posterior("rain", {"wet": 1}))
