"""Soft (virtual) evidence: pgmpy's ``virtual_evidence`` as the reference, and hard evidence as a special case."""

import math

import pytest
import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs import BayesNet, cpd, read_bif
from hybridpgm.infer.soft_evidence import Likelihood
from tests.graphs.bn_helpers import bundled_bif, single_thread, sprinkler  # noqa: F401 (autouse fixture)

pgmpy = pytest.importorskip("pgmpy")


@pytest.mark.parametrize("name", ["asia", "cancer"])
def test_soft_evidence_matches_pgmpy_virtual_evidence(name):
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.inference import VariableElimination

    bn = read_bif(bundled_bif(name))
    ve = VariableElimination(bn.to_pgmpy())
    soft_node, hard_node = bn.nodes[0], bn.nodes[-1]
    lik = torch.tensor([[0.2, 0.9], [1.0, 0.05]], dtype=torch.float64)
    evidence = {soft_node: Likelihood(lik), hard_node: torch.tensor([0, 1])}
    with torch.no_grad():
        post = bn.posterior(None, evidence)
    for i in range(2):
        virtual = TabularCPD(soft_node, 2, [[float(lik[i, 0])], [float(lik[i, 1])]],
                             state_names={soft_node: bn.state_names[soft_node]})
        hard = {hard_node: bn.state_names[hard_node][int(evidence[hard_node][i])]}
        for v in post:
            f = ve.query([v], evidence=hard, virtual_evidence=[virtual], show_progress=False)
            ref = torch.tensor([float(f.values[f.state_names[v].index(s)]) for s in bn.state_names[v]],
                               dtype=torch.float64)
            assert torch.allclose(post[v][i], ref, atol=1e-6), (v, i)


def test_soft_evidence_equals_hard_evidence_when_one_hot_and_log_form_agrees():
    bn = sprinkler()
    hard = bn.posterior("rain", {"wet": 1})
    soft = bn.posterior("rain", {"wet": Likelihood([0.0, 1.0])})
    log_soft = bn.posterior("rain", {"wet": Likelihood(torch.tensor([float("-inf"), 0.0]), log=True)})
    assert torch.allclose(hard, soft, atol=1e-12) and torch.allclose(hard, log_soft, atol=1e-12)
    # a likelihood scaled by a constant changes log p(e) by its log, not the posterior
    a = bn.posterior("rain", {"wet": Likelihood([0.3, 0.6])})
    b = bn.posterior("rain", {"wet": Likelihood([0.1, 0.2])})
    assert torch.allclose(a, b, atol=1e-12)
    la = bn.log_evidence({"wet": Likelihood([0.3, 0.6])})
    lb = bn.log_evidence({"wet": Likelihood([0.1, 0.2])})
    assert math.isclose(float((la - lb).detach()), math.log(3.0), abs_tol=1e-6)  # float32 tables


@pytest.mark.parametrize("lik,match", [
    (torch.tensor([0.5, 0.5, 0.5]), r"shape \[2\]"),
    (torch.tensor([-0.1, 1.0]), "non-negative"),
    (torch.tensor([[0.0, 0.0], [1.0, 1.0]]), r"zero for every state in row\(s\) \[0\]"),
    ("ab", "must be numbers, got str"),  # before, a raw TypeError
    (torch.tensor([True, False]), "must be real numbers, got dtype torch.bool"),
])
def test_bad_soft_evidence_raises_naming_node(lik, match):
    with pytest.raises(EvidenceError, match="'wet'"):
        sprinkler().posterior("rain", {"wet": Likelihood(lik)})
    with pytest.raises(EvidenceError, match=match):
        sprinkler().posterior("rain", {"wet": Likelihood(lik)})


@pytest.mark.parametrize("scale", [1e39, 1e-46])
def test_a_likelihood_beyond_a_float32_networks_range_keeps_its_ratios(scale):
    """A likelihood's scale does not change the posterior.  Before, a float64 likelihood was cast to a
    float32 network's dtype before validation: 1e39 overflowed ('must be finite') and 1e-46 underflowed
    ('zero for every state')."""
    bn = sprinkler().to(torch.float32)
    lik = torch.tensor([1.0, 2.0], dtype=torch.float64)
    expected = bn.posterior("rain", {"wet": Likelihood(lik)})
    torch.testing.assert_close(bn.posterior("rain", {"wet": Likelihood(lik * scale)}), expected)
    shift = bn.log_evidence({"wet": Likelihood(lik * scale)}) - bn.log_evidence({"wet": Likelihood(lik)})
    torch.testing.assert_close(shift, torch.tensor(math.log(scale), dtype=torch.float32))


def test_a_likelihood_given_as_a_list_is_read_in_the_network_s_dtype():
    """Before, a list was read as float32 and the float64 answers moved by about 1e-10."""
    bn = sprinkler().double()
    as_list = bn.posterior("rain", {"wet": Likelihood([0.3, 0.9])})
    as_float64 = bn.posterior("rain", {"wet": Likelihood(torch.tensor([0.3, 0.9], dtype=torch.float64))})
    assert as_list.dtype == torch.float64 and torch.equal(as_list, as_float64)


def test_a_likelihood_for_a_context_input_is_named_as_such():
    """Soft evidence for a neural CPD's context input says what the name is (it raised a bare ``KeyError``,
    then an ``EvidenceError`` of ``BayesNet.cardinality`` that named no soft evidence)."""
    net = torch.nn.Linear(2, 2)
    bn = BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(net, ["c"], 2, context=["u"]))
    with pytest.raises(EvidenceError, match="soft evidence.*'u' is a context input"):
        bn.posterior("c", {"u": Likelihood([0.2, 0.8])})
