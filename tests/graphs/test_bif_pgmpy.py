"""Conversion to and from pgmpy networks (hybridpgm/graphs/bif_pgmpy.py), against pgmpy's own tables."""

import warnings

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, bif, bif_pgmpy, cpd
from tests.graphs.bn_helpers import pgmpy_model, single_thread  # noqa: F401 (autouse fixture)
from tests.graphs.test_bif import _assert_same_as_pgmpy

pytest.importorskip("pgmpy")


def test_the_conversions_are_still_importable_from_bif():
    assert bif.from_pgmpy is bif_pgmpy.from_pgmpy and bif.to_pgmpy is bif_pgmpy.to_pgmpy


def test_from_pgmpy_and_to_pgmpy():
    model = pgmpy_model("asia")
    bn = BayesNet.from_pgmpy(model)
    _assert_same_as_pgmpy(bn, model)
    _assert_same_as_pgmpy(bn, bn.to_pgmpy())
    assert bn.to_pgmpy().check_model()


def _pgmpy_net(edges):
    try:
        from pgmpy.models import DiscreteBayesianNetwork as Net
    except ImportError:  # older pgmpy
        from pgmpy.models import BayesianNetwork as Net
    return Net(edges)


def test_from_pgmpy_reorders_a_childs_table_to_the_parents_state_order():
    """Before: the child's columns were paired with the parent's states by position, so p(C=u | A=x, B=n) read
    the numbers the CPD gives for another state of A."""
    from pgmpy.factors.discrete import TabularCPD

    net = _pgmpy_net([("A", "C"), ("B", "C")])
    child = TabularCPD("C", 2, [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]],
                       evidence=["A", "B"], evidence_card=[3, 2],
                       state_names={"C": ["u", "v"], "A": ["z", "x", "y"], "B": ["n", "m"]})
    net.add_cpds(TabularCPD("A", 3, [[0.2], [0.3], [0.5]], state_names={"A": ["x", "y", "z"]}),
                 TabularCPD("B", 2, [[0.6], [0.4]], state_names={"B": ["m", "n"]}), child)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bn = BayesNet.from_pgmpy(net)
    assert bn.state_names["A"] == ["x", "y", "z"] and bn.state_names["B"] == ["m", "n"]
    table = bn.cpds["C"].probs.detach()  # [A, B, C] in A's and B's own orders
    for i, a in enumerate(bn.state_names["A"]):
        for j, b in enumerate(bn.state_names["B"]):
            for k, c in enumerate(bn.state_names["C"]):
                col = 2 * ["z", "x", "y"].index(a) + ["n", "m"].index(b)
                assert table[i, j, k].item() == pytest.approx(child.values.reshape(2, 6)[k, col], abs=1e-15), (a, b, c)
    assert bn.posterior("C", {"A": "x", "B": "n"})[0].item() == pytest.approx(0.3, abs=1e-12)  # column (x, n)


def test_from_pgmpy_refuses_a_child_listing_other_parent_states():
    from pgmpy.factors.discrete import TabularCPD

    net = _pgmpy_net([("A", "B")])
    net.add_cpds(TabularCPD("A", 2, [[0.9], [0.1]], state_names={"A": ["x", "y"]}),
                 TabularCPD("B", 2, [[0.2, 0.7], [0.8, 0.3]], evidence=["A"], evidence_card=[2],
                            state_names={"B": ["u", "v"], "A": ["x", "w"]}))
    with pytest.raises(ModelSpecError, match=r"CPD of 'B' lists the states of its parent 'A' as \['x', 'w'\], "
                                             r"the CPD of 'A' as \['x', 'y'\]"):
        BayesNet.from_pgmpy(net)


def test_to_pgmpy_names_every_cpds_states_when_only_some_nodes_have_names():
    """Before: a child's CPD listed pgmpy's default states [0, 1] for a named parent, a model pgmpy's check_model
    refuses (and from_pgmpy, which now checks the parent state order, too)."""
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]), states=["lo", "hi"])
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    net = bn.to_pgmpy()
    assert net.check_model()
    assert net.get_cpds("b").state_names == {"b": [0, 1], "a": ["lo", "hi"]}
    back = BayesNet.from_pgmpy(net)
    assert back.state_names == {"a": ["lo", "hi"], "b": ["0", "1"]}
    torch.testing.assert_close(back.cpds["b"].probs, bn.cpds["b"].probs.detach().double(), rtol=0, atol=1e-7)


def test_to_pgmpy_without_pgmpy_names_the_extra(monkeypatch):
    """Without pgmpy, ``to_pgmpy`` raised a bare ``No module named 'pgmpy'``; the loaders name the extra, so must
    it (still a ``ModuleNotFoundError``, for ``except ImportError``)."""
    import sys

    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet()
    bn.add("a", cpd.Table([0.4, 0.6]))
    for name in [m for m in sys.modules if m == "pgmpy" or m.startswith("pgmpy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pgmpy", None)  # import pgmpy now fails as where it is not installed
    with pytest.raises(ModuleNotFoundError, match=r"to_pgmpy needs pgmpy.*hybridpgm\[pgmpy\]") as caught:
        bn.to_pgmpy()
    assert caught.value.name == "pgmpy"
