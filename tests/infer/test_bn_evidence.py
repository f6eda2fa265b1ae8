"""Evidence parsing for exact BN queries, and the network facts cached with the plans."""

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import cpd
from hybridpgm.infer.bn_evidence import dtype_device, network_facts, parse_evidence
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import random_bn, sprinkler


def test_rows_split_into_observed_partial_and_soft():
    bn = sprinkler()
    ev = parse_evidence(bn, {"rain": torch.tensor([0, 1, 1]), "sprinkler": torch.tensor([1, -1, 0]),
                             "wet": Likelihood([0.2, 0.9])})
    assert ev.n == 3 and ev.batched
    assert ev.observed["rain"].tolist() == [0, 1, 1]
    lik = ev.partial["sprinkler"].exp()
    assert lik.tolist() == [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]  # one-hot where observed, ones where not
    assert ev.soft == {"wet"} and ev.partial["wet"].shape == (3, 2)
    nan = parse_evidence(bn, {"sprinkler": torch.tensor([float("nan"), 1.0])})
    assert nan.partial["sprinkler"].exp().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert parse_evidence(bn, {"wet": torch.tensor([-1, -1])}).partial == {}  # missing everywhere: no evidence
    scalar = parse_evidence(bn, {"rain": "yes"})
    assert not scalar.batched and scalar.observed["rain"].tolist() == [1]


@pytest.mark.parametrize("value,match", [(torch.tensor([0, 2]), "out of range for 'wet'"),
                                         (torch.tensor([0, -2]), "out of range for 'wet'"),
                                         (torch.tensor([-1.0, 1.0]), "out of range for 'wet'"),
                                         (torch.tensor([0.5, 1.0]), "non-integer"),
                                         (torch.zeros(2, 2, dtype=torch.long), "scalar or \\[N\\]"),
                                         # before, these were cast to a wrapped (negative) index: unobserved
                                         (torch.tensor([0.0, float("inf")]), "value inf out of range for 'wet'"),
                                         (torch.tensor([1e20, 0.0], dtype=torch.float64),
                                          "value 1e\\+20 out of range for 'wet'"),
                                         # before, raw torch errors
                                         (None, "'wet' must be a number, a state or a tensor of them, got "
                                                "NoneType"),
                                         (torch.tensor([1j]), "'wet' must be real")])
def test_bad_values_are_named(value, match):
    with pytest.raises(EvidenceError, match=match):
        parse_evidence(sprinkler(), {"wet": value})


def test_facts_are_cached_until_a_node_is_added():
    bn = sprinkler()
    facts = network_facts(bn)
    assert network_facts(bn) is facts
    assert facts.children["rain"] == ["sprinkler", "wet"] and facts.cards["wet"] == 2 and facts.tables_only
    bn.add("puddle", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["wet"]))
    fresh = network_facts(bn)
    assert fresh is not facts and "puddle" in fresh.children["wet"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dtype_device_agrees_with_the_module(dtype):
    bn = random_bn(2, 4, dtype=dtype)
    assert dtype_device(bn, network_facts(bn)) == (bn.dtype, bn.device)
    bn = bn.to(torch.float32 if dtype == torch.float64 else torch.float64)
    assert dtype_device(bn, network_facts(bn)) == (bn.dtype, bn.device)


def test_continuous_evidence_must_be_a_scalar_or_a_column():
    """Before, ``[N, 2]`` evidence on a continuous node failed in a reshape deep in the contraction."""
    bn = sprinkler()
    bn.add("level", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["wet"]))
    with pytest.raises(EvidenceError, match=r"continuous node 'level' must be a scalar or \[N\], got shape \(1, 2\)"):
        parse_evidence(bn, {"level": torch.tensor([[0.4, 0.3]])})


def test_a_query_naming_a_node_twice_is_refused():
    """Before, ``joint=True`` passed the repeated name to einsum, which raised its own ValueError."""
    with pytest.raises(EvidenceError, match=r"query names \['rain'\] more than once"):
        sprinkler().posterior(["rain", "wet", "rain"], {"sprinkler": 1}, joint=True)
