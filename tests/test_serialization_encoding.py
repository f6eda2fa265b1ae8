"""The spec of a module and the module a spec builds (hybridpgm/serialization_encoding.py), split out of
hybridpgm/serialization.py, whose private names still give these functions."""

import pytest
import torch
from torch import nn

import hybridpgm.serialization as serialization
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_encoding import REFUSAL_ATTR, build, construct, decode, encode, module_spec


def test_the_names_serialization_had_are_these_functions():
    assert (serialization._encode, serialization._decode, serialization._build, serialization._construct,
            serialization._module_spec, serialization._REFUSAL_ATTR) == \
        (encode, decode, build, construct, module_spec, REFUSAL_ATTR)


def test_values_encode_to_plain_data_and_decode_back():
    """A tuple comes back a list; tensors go to ``tensors`` (a parameter comes back one, frozen as it was)."""
    weight = nn.Parameter(torch.randn(2), requires_grad=False)
    tensors = {}
    value = {"sizes": (3, [4, 5]), "dtype": torch.float64, "x": torch.arange(3.0), "w": weight, "none": None}
    encoded = encode(value, tensors, "arg")
    assert sorted(tensors) == ["t0", "t1"] and isinstance(encoded, dict) and "__dict__" in encoded
    back = decode(encoded, tensors)
    assert back["sizes"] == [3, [4, 5]] and back["dtype"] is torch.float64 and back["none"] is None
    assert torch.equal(back["x"], value["x"])
    assert isinstance(back["w"], nn.Parameter) and not back["w"].requires_grad and torch.equal(back["w"], weight)


def test_a_spec_builds_the_module_it_describes():
    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.MaxPool1d([2])), nn.Flatten())
    tensors = {}
    spec = module_spec(net, tensors, "net")
    rebuilt = build(spec, tensors)
    assert repr(rebuilt) == repr(net) and not tensors


@pytest.mark.parametrize("value", [object(), {1: 2}, torch.zeros(2, device="meta")], ids=["object", "int key", "meta"])
def test_what_is_not_plain_data_is_refused_naming_where(value):
    with pytest.raises(CheckpointError, match=r"^cannot save Model\(arg=\.\.\.\): "):
        encode(value, {}, "Model(arg=...)")
