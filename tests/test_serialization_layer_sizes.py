"""A torch layer given a ``torch.Size`` option it keeps as given (``nn.Unflatten(1, torch.Size([4, 8]))``, what
``x.shape[1:]`` gives) saves and loads with that ``torch.Size`` (hybridpgm/serialization_layers.py).

Before, the option was written as a list and rebuilt as a tuple: the loaded layer's ``unflattened_size`` was
``(4, 8)``, not ``torch.Size([4, 8])`` (the layer computed the same; code testing ``isinstance(size, torch.Size)``
or calling ``size.numel()`` did not)."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_layers import build_layer, layer_spec

#: run in a fresh process: load the file, print the Unflatten's option's type and value, save the output
_LOAD = """
import sys, torch, hybridpgm
net = hybridpgm.load(sys.argv[1])
size = net[1].unflattened_size
print(type(size).__name__, list(size), size.numel() if isinstance(size, torch.Size) else None)
with torch.no_grad():
    torch.save(net(torch.load(sys.argv[1] + ".x", weights_only=True)), sys.argv[1] + ".y")
"""


def _saved(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 32), nn.Unflatten(1, torch.Size([4, 8])), nn.Conv1d(4, 2, 3)).eval()
    path = str(hybridpgm.save(net, tmp_path / "net.pt"))
    x = torch.randn(3, 32)
    torch.save(x, path + ".x")
    with torch.no_grad():
        return net, net(x), path


def _load_in_a_fresh_process(path):
    done = subprocess.run([sys.executable, "-c", _LOAD, path], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout.split(maxsplit=1), torch.load(path + ".y", weights_only=True)


def test_a_size_option_loads_as_a_size_in_a_fresh_process(tmp_path):
    net, y, path = _saved(tmp_path)
    (kind, value), loaded_y = _load_in_a_fresh_process(path)
    assert (kind, value.strip()) == ("Size", "[4, 8] 32")
    assert torch.equal(loaded_y, y)
    loaded = hybridpgm.load(path)[1].unflattened_size
    assert type(loaded) is torch.Size and loaded == net[1].unflattened_size


def test_a_file_written_before_loads_the_size_as_a_tuple(tmp_path):
    """A file without the ``sizes`` entry (every file written before it) loads as it did: a tuple, same output."""
    _, y, path = _saved(tmp_path)
    state = torch.load(path, weights_only=True)
    layer = state["model"]["layers"][1]
    assert layer.pop("sizes") == ["unflattened_size"]
    torch.save(state, path)
    (kind, value), loaded_y = _load_in_a_fresh_process(path)
    assert (kind, value.strip()) == ("tuple", "[4, 8] None") and torch.equal(loaded_y, y)


@pytest.mark.parametrize("given", [torch.Size([4, 8]), (4, 8), [4, 8]], ids=["Size", "tuple", "list"])
def test_only_a_size_is_named(given):
    """The spec names the options kept as a torch.Size; a layer given a tuple has the spec of earlier files, a
    layer that stores a tuple whatever it is given (LayerNorm) names none."""
    spec = layer_spec(nn.Unflatten(1, given), "net[1]")
    assert spec.get("sizes") == (["unflattened_size"] if isinstance(given, torch.Size) else None)
    rebuilt = build_layer(spec, "net[1]").unflattened_size
    assert type(rebuilt) is type(given) and rebuilt == given
    assert "sizes" not in layer_spec(nn.LayerNorm(torch.Size([3, 4])), "net[0]")


@pytest.mark.parametrize("sizes", ["unflattened_size", ["dim"], ["absent"], [3]])
def test_a_changed_sizes_entry_is_refused_naming_the_layer(sizes):
    spec = {"layer": "Unflatten", "args": {"dim": 1, "unflattened_size": [4, 8]}, "sizes": sizes}
    with pytest.raises(CheckpointError, match=r"model file gives the Unflatten at net\[1\] the torch.Size options "
                                              r".*, not a list of the names of its options that hold a torch.Size"):
        build_layer(spec, "net[1]")


@pytest.mark.parametrize("value", [[2.5, 4], [[2], 4], [True, 4], ["2", 4]])
def test_a_size_option_that_is_not_integers_is_refused_naming_the_layer_and_option(value, tmp_path):
    """A damaged file: before, torch's raw ``TypeError`` from ``torch.Size`` (not naming the option), or a bool read
    as 1 without a word."""
    spec = {"layer": "Unflatten", "args": {"dim": 1, "unflattened_size": value}, "sizes": ["unflattened_size"]}
    with pytest.raises(CheckpointError, match=r"model file gives the Unflatten at net\[1\] the torch.Size option\(s\) "
                                              r"unflattened_size=\[.*\], not a list of integers"):
        build_layer(spec, "net[1]")
    path = str(hybridpgm.save(nn.Sequential(nn.Linear(8, 8), nn.Unflatten(1, torch.Size([2, 4]))), tmp_path / "n.pt"))
    state = torch.load(path, weights_only=True)
    state["model"]["layers"][1]["args"]["unflattened_size"] = value
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Unflatten at .*unflattened_size=.*not a list of integers"):
        hybridpgm.load(path)
