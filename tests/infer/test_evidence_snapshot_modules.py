"""A layer without tensors replaced in a neural CPD retires the evidence table (hybridpgm/infer/evidence_snapshot.py).

Carried from session 41 (CARRYA, session 42): the snapshot held the network's tensors and its modules' ``training``
flags, so ``body[2] = nn.ReLU()`` in place of an ``nn.Tanh`` (no tensor, the same mode) went unseen and the table
answered for the old network.  The snapshot now holds the modules themselves, and the message names the path of the
layer replaced."""

import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet
from tests.infer.sprinkler_neural import EVIDENCE, sprinkler_net

def _net() -> tuple[BayesNet, torch.nn.Sequential]:
    return sprinkler_net(torch.nn.Tanh())


def _path(bn, layer):
    return next(name for name, m in bn.named_modules() if m is layer)


def test_a_layer_without_tensors_replaced_retires_the_table_and_is_named():
    """Failed on 169fb6c: the table answered the Tanh network's posterior after the ReLU replaced it."""
    bn, body = _net()
    table = bn.compile_evidence("wet")
    old = table.posterior("rain", EVIDENCE)
    body[1] = torch.nn.ReLU()
    assert not torch.allclose(bn.posterior("rain", EVIDENCE), old)  # the network answers otherwise now
    path = _path(bn, body[1])
    with pytest.raises(ConfigError, match=r"the network changed after its evidence table over \['wet'\]") as err:
        table.posterior("rain", EVIDENCE)
    assert f"the module at '{path}' was replaced (Tanh -> ReLU)" in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match=r"changed after"):
        table.log_evidence(EVIDENCE)
    served = bn.compile_evidence("wet")  # the remedy the message names
    torch.testing.assert_close(served.posterior("rain", EVIDENCE), bn.posterior("rain", EVIDENCE))


def test_a_layer_added_or_removed_is_named():
    """Failed on 169fb6c for the added layer with no tensor and the same mode (an Identity at the end)."""
    bn, body = _net()
    table = bn.compile_evidence("wet")
    body.append(torch.nn.Identity().eval())
    with pytest.raises(ConfigError, match=r"the module at '[^']*wet[^']*\.3' was added \(Identity\)"):
        table.posterior("rain", EVIDENCE)


def test_the_same_layer_put_back_answers_again_and_copies_answer_for_their_network():
    """Guard: the module objects are compared, not their types; a pickled table answers for its network's copy."""
    bn, body = _net()
    table = bn.compile_evidence("wet")
    before = table.posterior("rain", EVIDENCE)
    tanh = body[1]
    body[1] = torch.nn.Tanh()  # the same type, another object: replaced as well
    with pytest.raises(ConfigError, match=r"was replaced \(Tanh -> Tanh\)"):
        table.posterior("rain", EVIDENCE)
    body[1] = tanh
    torch.testing.assert_close(table.posterior("rain", EVIDENCE), before, rtol=0, atol=0)
    copied = pickle.loads(pickle.dumps(table))
    torch.testing.assert_close(copied.posterior("rain", EVIDENCE), before, rtol=0, atol=0)
