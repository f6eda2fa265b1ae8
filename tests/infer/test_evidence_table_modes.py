"""An evidence table over a network with a neural CPD is retired by a mode change
(hybridpgm/infer/evidence_snapshot.py).

Found by the DEPLOY audit: ``fit`` hands a network back in training mode; a table built then held one dropout draw
(or a batch norm's batch statistics over the enumerated configurations) and went on answering after ``bn.eval()``,
0.059 away from the eval-mode posterior, with no error.  The snapshot now holds every module's ``training`` flag."""

import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd

EVIDENCE = {"wet": torch.tensor([0, 1])}
MODE_CHANGE = r"switched between training and eval mode \(bn\.train\(\)/bn\.eval\(\)\).*over \['wet'\]"


def _net(layer: str) -> BayesNet:
    """The sprinkler network with a neural ``wet`` whose hidden layer is a dropout or a batch norm."""
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("cloudy", cpd.Table([0.5, 0.5]))
    bn.add("sprinkler", cpd.Table([[0.5, 0.5], [0.9, 0.1]], ["cloudy"]))
    bn.add("rain", cpd.Table([[0.8, 0.2], [0.2, 0.8]], ["cloudy"]))
    middle = torch.nn.Dropout(0.5) if layer == "dropout" else torch.nn.BatchNorm1d(8)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), middle, torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return bn.add("wet", cpd.Neural(net, ["sprinkler", "rain"], 2))


@pytest.mark.parametrize("layer", ["dropout", "batch_norm"])
def test_a_table_built_in_training_mode_is_retired_by_eval(layer):
    bn = _net(layer)
    table = bn.compile_evidence("wet")  # training mode, as fit hands the network back
    bn.eval()
    with pytest.raises(ConfigError, match=MODE_CHANGE):
        table.posterior("rain", EVIDENCE)
    with pytest.raises(ConfigError, match=MODE_CHANGE):
        table.log_evidence(EVIDENCE)
    served = bn.compile_evidence("wet")  # the remedy the message names
    torch.testing.assert_close(served.posterior("rain", EVIDENCE), bn.posterior("rain", EVIDENCE))


@pytest.mark.parametrize("layer", ["dropout", "batch_norm"])
def test_a_table_built_in_eval_mode_is_retired_by_train(layer):
    bn = _net(layer).eval()
    table = bn.compile_evidence("wet")
    before = table.posterior("rain", EVIDENCE)
    bn.train()
    with pytest.raises(ConfigError, match=MODE_CHANGE):
        table.posterior("rain", EVIDENCE)
    bn.eval()  # back in the mode it was built in: the table answers again, as it did
    torch.testing.assert_close(table.posterior("rain", EVIDENCE), before, rtol=0, atol=0)


def test_a_mode_change_of_one_submodule_is_seen():
    bn = _net("dropout").eval()
    table = bn.compile_evidence("wet")
    bn.cpds["wet"].net[1].train()  # only the dropout layer
    with pytest.raises(ConfigError, match=MODE_CHANGE):
        table.posterior("rain", EVIDENCE)


def test_a_copied_table_follows_its_copied_network():
    bn = _net("dropout").eval()
    table = bn.compile_evidence("wet")
    copied = pickle.loads(pickle.dumps(table))
    want = table.posterior("rain", EVIDENCE)
    torch.testing.assert_close(copied.posterior("rain", EVIDENCE), want, rtol=0, atol=0)
    copied.bn.train()
    with pytest.raises(ConfigError, match=MODE_CHANGE):
        copied.posterior("rain", EVIDENCE)
    torch.testing.assert_close(table.posterior("rain", EVIDENCE), want, rtol=0, atol=0)  # the original's net: eval


def test_an_all_table_network_keeps_its_table_across_modes():
    """A table CPD answers the same in either mode: no walk over the modules, no refusal."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    table = bn.compile_evidence("b")
    want = table.posterior("a", {"b": torch.tensor([0, 1])})
    bn.eval()
    torch.testing.assert_close(table.posterior("a", {"b": torch.tensor([0, 1])}), want, rtol=0, atol=0)
