"""BayesNet context inputs (hybridpgm/graphs/bn_inputs.py): ``posterior``, ``log_evidence`` and ``map`` take
``inputs=`` (``context=`` now) as ``model`` and ``log_prob`` do (it raised a raw TypeError), with the same answers
as the context given in the evidence dict; a context input given both ways is refused naming it; ``log_prob``
given a context input as a
data column says ``context=`` (audit COMPOSE, finding 2)."""
from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs import BayesNet, cpd


def _net():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("c", cpd.Table([0.3, 0.7]))
    bn.add("y", cpd.Neural(torch.nn.Linear(4, 3), ["c"], 3, context=["z"]))
    return bn, torch.tensor([0, 2, 1]), torch.tensor([0, 1, 1]), torch.randn(3, 2)


def test_log_evidence_takes_inputs_as_log_prob_does():
    bn, y, c, z = _net()
    by_keyword = bn.log_evidence({"c": c, "y": y}, context={"z": z})
    torch.testing.assert_close(by_keyword, bn.log_evidence({"c": c, "y": y, "z": z}))
    torch.testing.assert_close(by_keyword, bn.log_prob({"c": c, "y": y}, context={"z": z}))
    torch.testing.assert_close(bn.log_evidence({"y": y}, context=z), bn.log_evidence({"y": y, "z": z}))  # one name


def test_posterior_and_map_take_inputs():
    bn, y, _, z = _net()
    torch.testing.assert_close(bn.posterior("c", {"y": y}, context={"z": z}), bn.posterior("c", {"y": y, "z": z}))
    joint = bn.posterior(["c"], {"y": y}, joint=True, context={"z": z})
    torch.testing.assert_close(joint, bn.posterior(["c"], {"y": y, "z": z}, joint=True))
    got, best = bn.map({"y": y}, context={"z": z}, return_log_prob=True)
    want, want_best = bn.map({"y": y, "z": z}, return_log_prob=True)
    assert torch.equal(got["c"], want["c"])
    torch.testing.assert_close(best, want_best)
    torch.testing.assert_close(bn.posterior("y", None, context={"z": z}), bn.posterior("y", {"z": z}))


@pytest.mark.parametrize("query", ["log_evidence", "posterior", "map"])
def test_a_context_input_given_both_ways_is_refused_naming_it(query):
    bn, y, _, z = _net()
    with pytest.raises(EvidenceError, match=rf"BayesNet.{query}: the context input\(s\) \['z'\] are given both"):
        getattr(bn, query)(evidence={"y": y, "z": z}, context={"z": z})


def test_inputs_of_an_unknown_name_are_refused_as_in_log_prob():
    bn, y, _, z = _net()
    with pytest.raises(DataError, match=r"unknown context input\(s\) \['w'\]"):
        bn.log_evidence({"y": y}, context={"w": z})
    with pytest.raises(DataError, match="context inputs must be a tensor or array"):
        bn.map({"y": y}, context=[1, 2])


def test_log_prob_given_a_context_input_as_a_column_names_inputs():
    bn, y, c, z = _net()
    with pytest.raises(DataError, match=r"column 'z', which is not a node .*pass it as context=\{'z': \.\.\.\}"):
        bn.log_prob({"c": c, "y": y, "z": z})
    with pytest.raises(DataError, match=r"column 'w', which is not a node \(nodes: \['c', 'y'\]\)$"):
        bn.log_prob({"c": c, "y": y, "w": z}, context={"z": z})  # not a context input: no hint


def test_sample_given_a_context_input_both_ways_is_refused_naming_it():
    """Found by review C: ``sample(n, context=..., evidence=...)`` let the evidence's value win, silently."""
    bn, y, _, z = _net()
    with pytest.raises(EvidenceError, match=r"BayesNet.sample: the context input\(s\) \['z'\] are given both"):
        bn.sample(2, context={"z": z + 5}, evidence={"y": y, "z": z}, generator=torch.Generator().manual_seed(0))
    drawn = bn.sample(2, context={"z": z}, evidence={"y": y}, generator=torch.Generator().manual_seed(0))
    want = bn.sample(2, evidence={"y": y, "z": z}, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn["c"], want["c"])  # context= gives the draws of the context in the evidence
