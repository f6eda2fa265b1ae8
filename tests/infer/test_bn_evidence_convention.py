"""BayesNet evidence follows the one convention MarkovNet's follows too: ``-1`` (in an integer or a float tensor)
or ``NaN`` (float) is "not observed in this row"; any other negative value, and any non-integer, is refused with
an ``EvidenceError`` naming the node, the value and its row (never read as unobserved), at every exact entry point:
``log_evidence``, ``posterior``, ``map``, ``sample(evidence=...)`` and a compiled evidence table."""

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from tests.graphs.bn_helpers import sprinkler

QUERIES = {
    "log_evidence": lambda bn, e: bn.log_evidence(e),
    "posterior": lambda bn, e: bn.posterior(None, e),
    "map": lambda bn, e: bn.map(e, return_log_prob=True),
    "sample": lambda bn, e: bn.sample(3, evidence=e, generator=torch.Generator().manual_seed(5)),
    "table posterior": lambda bn, e: bn.compile_evidence(["rain", "wet"]).posterior(None, e),
    "table log_evidence": lambda bn, e: bn.compile_evidence(["rain", "wet"]).log_evidence(e),
}


def _same(a, b):
    """Equal results: tensors, dicts and tuples of them."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_float_minus_one_is_not_observed_as_integer_minus_one_and_nan(query):
    """Before: a float -1.0 raised 'value -1.0 out of range for 'wet'' where MarkovNet read it as unobserved."""
    bn = sprinkler().double()
    ask = QUERIES[query]
    as_long = ask(bn, {"wet": torch.tensor([1, -1, 0]), "rain": torch.tensor([-1, 1, -1])})
    as_nan = ask(bn, {"wet": torch.tensor([1.0, math.nan, 0.0]), "rain": torch.tensor([math.nan, 1.0, math.nan])})
    as_float = ask(bn, {"wet": torch.tensor([1.0, -1.0, 0.0]), "rain": torch.tensor([-1.0, 1.0, -1.0])})
    assert _same(as_float, as_long) and _same(as_float, as_nan)
    unobserved = ask(bn, {"wet": torch.tensor([1, 1, 0])})  # rain left out in the rows where it is -1
    if query in ("log_evidence", "table log_evidence"):
        assert as_float[0] == unobserved[0] and as_float[2] == unobserved[2]


@pytest.mark.parametrize("query", sorted(QUERIES))
@pytest.mark.parametrize("value, shown", [(torch.tensor([1, -2, 0]), r"value -2 out of range for 'wet' "
                                                                       r"\(cardinality 2\) in row 1"),
                                          (torch.tensor([1.0, 0.0, -2.0]), r"value -2.0 out of range for 'wet' "
                                                                            r"\(cardinality 2\) in row 2"),
                                          (torch.tensor([-1.5, 0.0, 1.0]), r"evidence for 'wet' holds non-integer "
                                                                           r"values: -1.5 in row 0"),
                                          (torch.tensor([1.0, 0.5, 1.0]), r"evidence for 'wet' holds non-integer "
                                                                          r"values: 0.5 in row 1"),
                                          (torch.tensor(-3), r"value -3 out of range for 'wet' \(cardinality 2\) "
                                                             r"in a scalar")])
def test_other_negatives_and_non_integers_are_refused_by_name(query, value, shown):
    """Before: the same message without the row (and MarkovNet read -2 as unobserved)."""
    with pytest.raises(EvidenceError, match=shown):
        QUERIES[query](sprinkler().double(), {"wet": value})


def test_the_same_evidence_tensor_means_the_same_in_both_families():
    """One float evidence tensor with -1.0 for 'unobserved', passed to a BayesNet and to the MarkovNet of the same
    tables, gives the same log-evidence; a -2 is refused by both.  Before: the BayesNet refused -1.0 and the
    MarkovNet read -2 as unobserved."""
    bn = BayesNet().add("rain", cpd.Table([0.8, 0.2])).add("sprinkler", cpd.Table([[0.6, 0.4], [0.9, 0.1]], ["rain"]))
    bn = bn.add("wet", cpd.Table([[[0.7, 0.3], [0.1, 0.9]], [[0.2, 0.8], [0.05, 0.95]]], ["rain", "sprinkler"]))
    bn = bn.double()
    mrf = MarkovNet({v: 2 for v in bn.nodes})
    for v, c in bn.cpds.items():
        mrf.add_factor(v, list(c.parents) + [v], c.probs.log())
    evidence = {"wet": torch.tensor([1.0, -1.0, 0.0]), "rain": torch.tensor([-1.0, 1.0, 0.0])}
    expected = mrf.log_partition(evidence=evidence) - mrf.log_partition()
    torch.testing.assert_close(bn.log_evidence(evidence), expected, rtol=0, atol=1e-12)
    for family in (bn.log_evidence, lambda e: mrf.log_partition(evidence=e)):
        with pytest.raises(EvidenceError, match=r"-2(\.0)?\b.*row 1|row 1.*-2"):
            family({"wet": torch.tensor([1.0, -2.0, 0.0])})
