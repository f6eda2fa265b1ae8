"""A damaged model file naming one option of a torch layer both among the options kept as lists (``"lists"``) and
among those kept as a ``torch.Size`` (``"sizes"``) is refused with a :class:`~hybridpgm.errors.CheckpointError`
naming the layer (hybridpgm/serialization_layers.py, ``build_layer``).

``layer_spec`` never writes such a file (an option is a list or a ``torch.Size``, not both); before, ``lists`` won
silently and the option was rebuilt a list."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_layers import build_layer, layer_spec


def test_layer_spec_names_an_option_in_one_entry_only():
    for given in ([4, 8], torch.Size([4, 8])):
        spec = layer_spec(nn.Unflatten(1, given), "net[1]")
        assert len(set(spec.get("lists", [])) & set(spec.get("sizes", []))) == 0


def test_an_option_in_both_lists_and_sizes_is_refused_naming_the_layer():
    spec = {"layer": "Unflatten", "args": {"dim": 1, "unflattened_size": [4, 8]},
            "lists": ["unflattened_size"], "sizes": ["unflattened_size"]}
    with pytest.raises(CheckpointError, match=r"model file gives the Unflatten at net\[1\] the option\(s\) "
                                              r"\['unflattened_size'\] as both a list .* and a torch.Size"):
        build_layer(spec, "net[1]")


def test_a_saved_file_naming_both_is_refused_by_load(tmp_path):
    net = nn.Sequential(nn.Linear(32, 32), nn.Unflatten(1, torch.Size([4, 8])), nn.Conv1d(4, 2, 3))
    path = str(hybridpgm.save(net, tmp_path / "net.pt"))
    state = torch.load(path, weights_only=True)
    layer = state["model"]["layers"][1]
    layer["lists"] = list(layer["sizes"])
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Unflatten at .*\[1\] the option\(s\) \['unflattened_size'\] as both"):
        hybridpgm.load(path)
