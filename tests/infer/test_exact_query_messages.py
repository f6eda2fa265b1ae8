"""The query checks of exact inference (:func:`hybridpgm.infer.exact.posterior_names`): an unknown query node is
named quoted (repr), with a close match, and the network's nodes are listed up to ten (found by an audit)."""

import pytest

from hybridpgm.errors import EvidenceError
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
