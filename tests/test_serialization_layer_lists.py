"""Torch layers given a list option (``nn.MaxPool2d([2, 2])``, ``nn.Unflatten(1, [4, 8])``: what a config read
from YAML or JSON gives) save and load as they were built (hybridpgm/serialization_layers.py).

Before, ``save`` refused every layer that keeps such an option as given ("the MaxPool2d's attribute
kernel_size=[2, 2] is not what the options saved for it ... give ((2, 2))"): the file's lists came back tuples."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_layers import build_layer, layer_spec

#: name -> (a network holding the layer with list options, its input's shape)
NETWORKS = {
    "MaxPool2d([2, 2])": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d([2, 2])), (2, 2, 6, 6)),
    "MaxPool2d(2, stride=[1, 2], padding=[1, 0])": (lambda: nn.MaxPool2d(2, stride=[1, 2], padding=[1, 0]),
                                                    (2, 2, 6, 6)),
    "MaxPool1d([2])": (lambda: nn.MaxPool1d([2]), (2, 3, 8)),
    "AvgPool2d([2, 2])": (lambda: nn.AvgPool2d([2, 2]), (2, 2, 6, 6)),
    "AvgPool2d(3, padding=[1, 0])": (lambda: nn.AvgPool2d(3, padding=[1, 0], count_include_pad=False),
                                     (2, 2, 6, 6)),
    "AdaptiveAvgPool2d([2, 3])": (lambda: nn.AdaptiveAvgPool2d([2, 3]), (2, 2, 6, 6)),
    "AdaptiveMaxPool2d([2, None])": (lambda: nn.AdaptiveMaxPool2d([2, None]), (2, 2, 6, 6)),
    "Unflatten(1, [4, 8])": (lambda: nn.Sequential(nn.Flatten(), nn.Unflatten(1, [4, 8]), nn.Conv1d(4, 2, 3)),
                             (2, 32)),
    # Conv and LayerNorm store a tuple whatever they are given: a list and a tuple build the same layer
    "Conv2d(kernel_size=[3, 3], padding=[1, 2])": (lambda: nn.Conv2d(2, 3, kernel_size=[3, 3], stride=[1, 2],
                                                                     padding=[1, 2], dilation=[1, 1]), (2, 2, 6, 6)),
    "LayerNorm([3, 4])": (lambda: nn.LayerNorm([3, 4]), (2, 3, 4)),
}

#: run in a fresh process: load each file, give each layer's public attributes (with the type of each sequence)
#: and the output on the saved input
_LOAD = """
import json, sys, torch, hybridpgm
out = {}
for name, path in json.loads(sys.argv[1]).items():
    net = hybridpgm.load(path)
    layers = list(net) if isinstance(net, torch.nn.Sequential) else [net]
    out[name] = [[type(layer).__name__, {k: [type(v).__name__, repr(v)] for k, v in vars(layer).items()
                                         if not k.startswith("_")}] for layer in layers]
    x = torch.load(path + ".x", weights_only=True)
    with torch.no_grad():
        torch.save(net(x), path + ".y")
print(json.dumps(out))
"""


def _attributes(net):
    layers = list(net) if isinstance(net, nn.Sequential) else [net]
    return [[type(layer).__name__, {k: [type(v).__name__, repr(v)] for k, v in vars(layer).items()
                                    if not k.startswith("_")}] for layer in layers]


def test_list_options_round_trip_bit_exact_in_a_fresh_process(tmp_path):
    """Each network saves, and a fresh Python process loads it with the same attributes (a list kept a list, of
    the same values), the same weights and the same output, bit for bit."""
    torch.manual_seed(0)
    paths, expected = {}, {}
    for i, (name, (make, shape)) in enumerate(NETWORKS.items()):
        net = make().eval()
        x = torch.randn(shape)
        path = str(hybridpgm.save(net, tmp_path / f"net{i}.pt"))
        torch.save(x, path + ".x")
        with torch.no_grad():
            expected[name] = (net, net(x))
        paths[name] = path
    done = subprocess.run([sys.executable, "-c", _LOAD, json.dumps(paths)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    for name, (net, y) in expected.items():
        assert loaded[name] == _attributes(net), name
        assert torch.equal(torch.load(paths[name] + ".y", weights_only=True), y), name
    assert loaded["MaxPool2d([2, 2])"][1][1]["kernel_size"] == ["list", "[2, 2]"]
    assert loaded["Unflatten(1, [4, 8])"][1][1]["unflattened_size"] == ["list", "[4, 8]"]


@pytest.mark.parametrize("given", [[2, 2], (2, 2)], ids=["list", "tuple"])
def test_a_list_is_named_and_a_tuple_is_not(given):
    """The spec names the options kept as lists; a layer given tuples (or one that stores tuples, Conv2d) has
    the spec of earlier files, which older hybridpgm reads."""
    spec = layer_spec(nn.MaxPool2d(given), "net[1]")
    assert spec.get("lists") == (["kernel_size", "stride"] if isinstance(given, list) else None)
    assert build_layer(spec, "net[1]").kernel_size == given
    assert "lists" not in layer_spec(nn.Conv2d(1, 2, [3, 3], padding=[1, 2]), "net[0]")


@pytest.mark.parametrize("lists", ["kernel_size", ["stride", 3], ["padding"], ["absent"]])
def test_a_changed_list_entry_is_refused_naming_the_layer(lists):
    """A file whose ``lists`` entry is not the names of list options the layer has is refused by name."""
    spec = {"layer": "MaxPool2d", "args": {"kernel_size": [2, 2], "stride": [2, 2], "padding": 0}, "lists": lists}
    with pytest.raises(CheckpointError, match=r"model file gives the MaxPool2d at net\[1\] the list options .*, "
                                              r"not a list of the names of its options that hold a list"):
        build_layer(spec, "net[1]")
