"""The centring of :mod:`hybridpgm.graphs.mrf_centring` takes each table's maximum over the states the evidence
allows: a maximum at a state the evidence rules out moved the allowed entries to its magnitude, where float32
rounds them (found by a review: ``ab = [[60000, 0, 0], [0.3, 0.1, -0.2]]`` given ``a = 1``: the entropy 7.3e-3 off
float64, ``log_prob`` 6.2e-4, BP's marginal 1.6e-5, each 1e-7 before the centring)."""

import pytest
import torch

from hybridpgm.graphs import MarkovNet


def _net(dtype, big):
    ab = torch.tensor([[big, 0.0, 0.0], [0.3, 0.1, -0.2]], dtype=dtype)
    bc = torch.tensor([[0.2, -0.1], [0.05, 0.4], [-0.3, 0.25]], dtype=dtype)
    return MarkovNet({"a": 2, "b": 3, "c": 2}).add_factor("ab", ["a", "b"], ab).add_factor("bc", ["b", "c"], bc)


@pytest.mark.parametrize("big", [3000.0, 60000.0])  # powers of two apart from nothing: exact in float32
def test_a_large_entry_the_evidence_rules_out_costs_no_float32_digit(big):
    evidence, x = {"a": torch.tensor([1])}, torch.tensor([[1, 1, 0]])
    answers = {}
    for dtype in (torch.float64, torch.float32):
        net = _net(dtype, big)
        d = net.distribution(evidence=evidence)
        answers[dtype] = torch.stack([d.log_prob(x)[0].double(), d.entropy().reshape(-1)[0].double(),
                                      net.marginals("bp", evidence=evidence)["c"][0, 0].double()])
    # the answers are O(1) sums of O(1) entries: float32 keeps them to a few ulps of 1 (the old code: 1e-7)
    assert torch.allclose(answers[torch.float32], answers[torch.float64], atol=1e-6, rtol=0)
