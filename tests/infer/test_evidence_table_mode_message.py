"""The mode-change message of a stale evidence table names a mode change only (hybridpgm/infer/evidence_snapshot.py).

Found by REVIEWC: :func:`~hybridpgm.infer.evidence_snapshot.mode_changed` compared the modules' ``training`` flags
only, so a layer of a neural CPD replaced by a new one in the other mode (new weights) was reported as
``bn.train()``/``bn.eval()``, whose remedy (build the table in the serving mode) hides the real change."""

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet
from tests.infer.sprinkler_neural import EVIDENCE, sprinkler_net

def _net() -> tuple[BayesNet, torch.nn.Sequential]:
    return sprinkler_net(torch.nn.Dropout(0.5), torch.nn.Tanh())


def test_a_replaced_layer_in_the_other_mode_is_named_as_a_change_not_a_mode_switch():
    bn, body = _net()
    table = bn.compile_evidence("wet")
    body[3] = torch.nn.Linear(8, 2)  # new weights; a new module is in training mode
    with pytest.raises(ConfigError, match=r"the network changed after its evidence table over \['wet'\]") as err:
        table.posterior("rain", EVIDENCE)
    assert "training and eval mode" not in str(err.value)


def test_a_parameter_updated_and_a_mode_switched_is_named_as_a_change():
    bn, body = _net()
    table = bn.compile_evidence("wet")
    with torch.no_grad():
        body[0].weight.add_(1.0)
    bn.train()
    with pytest.raises(ConfigError, match=r"the network changed after"):
        table.posterior("rain", EVIDENCE)


def test_a_mode_switch_alone_is_still_named():
    bn, _ = _net()
    table = bn.compile_evidence("wet")
    bn.train()
    with pytest.raises(ConfigError, match=r"switched between training and eval mode"):
        table.posterior("rain", EVIDENCE)
