"""MarkovNet evidence whose variables have rows of different lengths raises ``EvidenceError`` naming each variable
and its length, at every query, as BayesNet does (it was a ``ModelSpecError`` listing batch shapes only, which
``except EvidenceError`` missed)."""

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from tests.graphs.test_mrf_compile_evidence import _net  # the chain a - b - c of cardinalities 2, 3, 2


QUERIES = {
    "marginals exact": lambda m, e: m.marginals("exact", evidence=e),
    "marginals bp": lambda m, e: m.marginals("bp", evidence=e),
    "log_partition exact": lambda m, e: m.log_partition("exact", evidence=e),
    "log_partition mean_field": lambda m, e: m.log_partition("mean_field", evidence=e),
    "map_assignment": lambda m, e: m.map_assignment(evidence=e),
    "sample": lambda m, e: m.sample(3, evidence=e),
    "factor_graph": lambda m, e: m.factor_graph(evidence=e),
}


@pytest.mark.parametrize("query", QUERIES)
def test_rows_of_different_lengths_name_each_variable_and_its_length(query):
    evidence = {"a": torch.tensor([0, 1]), "c": torch.tensor([0, 1, 1])}
    with pytest.raises(EvidenceError, match=r"MarkovNet: evidence rows differ in length .*\{'a': 2, 'c': 3\}"):
        QUERIES[query](_net(), evidence)


def test_batch_shapes_beyond_one_dimension_are_named_in_full():
    evidence = {"a": torch.zeros(2, 3, dtype=torch.long), "b": torch.zeros(4, dtype=torch.long), "c": 1}
    with pytest.raises(EvidenceError, match=r"\{'a': \(2, 3\), 'b': 4, 'c': \(\)\}"):
        _net().marginals(evidence=evidence)


def test_the_message_matches_bayes_nets():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["a"]))
    mrf = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    evidence = {"a": torch.tensor([0, 1]), "b": torch.tensor([0, 1, 1])}
    with pytest.raises(EvidenceError, match=r"evidence rows differ in length: \{'a': 2, 'b': 3\}"):
        bn.posterior(None, evidence)
    with pytest.raises(EvidenceError, match=r"evidence rows differ in length .*\{'a': 2, 'b': 3\}"):
        mrf.marginals(evidence=evidence)


def test_evidence_that_broadcasts_is_answered_per_row():
    m = _net()
    got = m.marginals("exact", evidence={"a": torch.tensor([0, 1, -1]), "c": torch.tensor([1]), "b": 2})
    assert got["b"].shape == (3, 3) and torch.allclose(got["b"][:, 2], torch.ones(3, dtype=got["b"].dtype))
    for row, a in enumerate([0, 1, -1]):
        one = m.marginals("exact", evidence={"a": a, "c": 1, "b": 2})
        assert torch.allclose(got["a"][row], one["a"])
