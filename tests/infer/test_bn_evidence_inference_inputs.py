"""Bayes-net evidence created under
torch.inference_mode() and queried outside it, grad on (posterior and log_evidence raised torch's "Inference tensors
cannot be saved for backward")."""

import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd

FT = ["F", "T"]


def _bn():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    bn = BayesNet()
    bn.add("cloudy", cpd.Table.random(2, generator=g), states=FT)  # learnable tables: parameters with grad
    bn.add("sprinkler", cpd.Table.random(2, [2], ["cloudy"], generator=g), states=FT)
    bn.add("rain", cpd.Table.random(2, [2], ["cloudy"], generator=g), states=FT)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    bn.add("wet", cpd.Neural(net, ["sprinkler", "rain"], 2), states=FT)
    return bn


@pytest.mark.parametrize("query", ["posterior", "log_evidence"])
def test_evidence_made_under_inference_mode_is_answered_as_normal_evidence(query):
    bn = _bn()
    ev = {"wet": torch.tensor([0, 1, 1])}
    with torch.inference_mode():
        made_there = {k: v.clone() for k, v in ev.items()}
    ask = (lambda e: bn.posterior("rain", e)) if query == "posterior" else bn.log_evidence
    got = ask(made_there)
    expected = ask(ev)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.requires_grad
