"""The query checks of exact inference (:func:`hybridpgm.infer.exact.posterior_names`): an unknown query node is
named quoted (repr), with a close match, and the network's nodes are listed up to ten (found by an audit)."""

import pytest
import torch

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import BayesNet, cpd


def test_an_unknown_query_node_in_a_large_network_gives_a_short_message_with_a_suggestion():
    """Before, all 2000 node names went into the message (26,048 characters)."""
    bn = BayesNet()
    for i in range(2000):
        bn.add(f"node_{i:04d}", cpd.Table([0.5, 0.5]))
    with pytest.raises(EvidenceError) as caught:
        bn.posterior("nod_0001")
    assert str(caught.value) == ("query names unknown variable 'nod_0001'; did you mean 'node_0001'? (nodes: "
                                 + ", ".join(repr(f"node_{i:04d}") for i in range(10)) + " and 1990 more)")


def test_names_with_newlines_and_quotes_are_written_with_repr():
    """Before: ``query names unknown variable 'q\\nr' ...`` split the message over two lines."""
    bn = BayesNet()
    bn.add("a b", cpd.Table([0.5, 0.5]))
    with pytest.raises(EvidenceError) as caught:
        bn.posterior("q\nr")
    assert str(caught.value) == "query names unknown variable 'q\\nr' (nodes: 'a b')"
    with pytest.raises(EvidenceError, match="query names \\['a b'\\] more than once: \\['a b', 'a b'\\]"):
        bn.posterior(["a b", "a b"])


def _wide_network(n=2000):
    bn = BayesNet()
    for i in range(n):
        bn.add(f"node_{i:04d}", cpd.Table([0.5, 0.5]), states=["no", "yes"])
    return bn


def test_unknown_evidence_nodes_give_a_short_message_with_a_suggestion():
    """Evidence (and an evidence table) naming an unknown node listed all 2000 nodes (26,048 characters)."""
    bn = _wide_network()
    listed = ", ".join(repr(f"node_{i:04d}") for i in range(10)) + " and 1990 more"
    with pytest.raises(EvidenceError) as caught:
        bn.posterior("node_0000", {"nod_0001": 1})
    assert str(caught.value) == ("evidence names unknown variable 'nod_0001'; did you mean 'node_0001'? "
                                 f"(nodes: {listed})")
    with pytest.raises(EvidenceError) as caught:
        bn.compile_evidence(["nod_0001"])
    assert str(caught.value) == ("evidence table names unknown variable 'nod_0001'; did you mean 'node_0001'? "
                                 f"(nodes: {listed})")


def test_an_unknown_state_is_named_with_repr_and_a_suggestion():
    """``'no\\nstate' is not a state of 'a'`` spanned two lines; a near miss is suggested."""
    bn = _wide_network(2)
    with pytest.raises(EvidenceError) as caught:
        bn.posterior("node_0000", {"node_0001": "no\nstate"})
    assert str(caught.value) == "'no\\nstate' is not a state of 'node_0001' (states: 'no', 'yes')"
    with pytest.raises(EvidenceError, match=r"^'yes ' is not a state of 'node_0001'; did you mean 'yes'\?"):
        bn.posterior("node_0000", {"node_0001": "yes "})


def test_repeated_state_names_of_a_large_node_give_a_short_message():
    """A node of 100,000 state names with repeats: the message held all of them (500,056 characters), and finding
    the repeats took quadratic time."""
    states = [f"s{i}" for i in range(99_999)] + ["s0"]
    table = torch.full((100_000,), 1e-5, dtype=torch.float64)
    bn = BayesNet()
    with pytest.raises(ModelSpecError) as caught:
        bn.add("big", cpd.Table(table), states=states)
    message = str(caught.value)
    assert message.startswith("node 'big': state names must be distinct, ['s0'] repeat in ['s0', 's1',")
    assert message.endswith(" and 99990 more]") and len(message) < 300
