"""A sigmoid belief net's model, guide and enumerated model register each layer's network once per call.

Each read of ``self.decoders`` (``self.encoders``) inside a Pyro method registers every layer's parameters, and the
layer loops read it once per layer: ``2L^2``-odd ``param`` messages per call (131 for the model at L = 8, whose
decoders hold 16 parameters).  Counted, never timed.
"""

import collections

import torch

from hybridpgm.generative import SigmoidBeliefNet
from tests.generative.sbn_brute_force import single_thread  # noqa: F401 (autouse fixture)
from tests.param_messages import ParamMessages

L = 8


def _messages(program, x) -> collections.Counter:
    seen = ParamMessages()
    with seen:
        program(x)
    return seen.names


def _layers(names: collections.Counter, part: str) -> dict:
    return {n: k for n, k in names.items() if n.startswith(part + "$$$")}


def test_each_layer_parameter_is_registered_once_per_call():
    """Before: each decoder parameter 8 times in the model (128 of its 131 messages) and in the enumerated model,
    each encoder parameter 8 times in the guide (128 of 130); now 19, 18 and 19 messages."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6] + [2] * L)
    x = (torch.rand(3, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    decoders = {f"decoders$$${l}.{p}": 1 for l in range(L) for p in ("weight", "bias")}
    encoders = {f"encoders$$${l}.{p}": 1 for l in range(L) for p in ("weight", "bias")}
    model = _messages(sbn.model, x)
    assert _layers(model, "decoders") == decoders and not _layers(model, "encoders")
    guide = _messages(sbn.guide, x)
    assert _layers(guide, "encoders") == encoders and not _layers(guide, "decoders")
    enumerated = _messages(sbn.enumerated_model, x)
    assert _layers(enumerated, "decoders") == decoders
    # the rest is prior_logits, read a few times whatever the depth (the data's device and dtype checks, the plate)
    assert set(model) - set(decoders) == {"prior_logits"} and model["prior_logits"] <= 3
