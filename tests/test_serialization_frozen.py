"""Parameters with requires_grad=False load frozen, the others trainable, as saved
(hybridpgm/serialization_frozen.py).  Before, a VAE saved with a frozen decoder layer loaded with every parameter
trainable; a file written before the record loads as it did."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization import serializable


def _trainable(module):
    return {name: p.requires_grad for name, p in module.named_parameters()}


def test_frozen_parameters_stay_frozen_after_load(tmp_path):
    vae = hybridpgm.VAE(6, 2, [5])
    vae.model_parameters()[0].requires_grad_(False)
    hybridpgm.save(vae, tmp_path / "v.pt")
    back = hybridpgm.load(tmp_path / "v.pt")
    assert _trainable(back) == _trainable(vae)
    assert list(_trainable(back).values()).count(False) == 1


@serializable
class _FrozenByItsConstructor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.net.bias.requires_grad_(False)


def test_a_parameter_the_constructor_froze_and_the_user_trained_loads_trainable(tmp_path):
    net = _FrozenByItsConstructor()
    net.net.bias.requires_grad_(True)
    net.net.weight.requires_grad_(False)
    hybridpgm.save(net, tmp_path / "n.pt")
    assert _trainable(hybridpgm.load(tmp_path / "n.pt")) == {"net.weight": False, "net.bias": True}


def test_a_shared_frozen_parameter_is_frozen_under_each_name(tmp_path):
    mrf = hybridpgm.graphs.MarkovNet({"a": 2, "b": 2, "c": 2})
    coupling = nn.Parameter(torch.randn(2, 2), requires_grad=False)
    mrf.add_factor("ab", ["a", "b"], coupling).add_factor("bc", ["b", "c"], coupling)
    mrf.add_factor("ca", ["c", "a"], nn.Parameter(torch.randn(2, 2)))
    hybridpgm.save(mrf, tmp_path / "m.pt")
    back = hybridpgm.load(tmp_path / "m.pt")
    assert {n: p.requires_grad for n, p in back.named_parameters(remove_duplicate=False)} == \
        {n: p.requires_grad for n, p in mrf.named_parameters(remove_duplicate=False)}


def _rewritten(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


def test_a_file_without_the_record_loads_with_the_parameters_as_built(tmp_path):
    """A file of the previous release: the same entries, no "frozen"."""
    net = _FrozenByItsConstructor()
    net.net.weight.requires_grad_(False)
    path = _rewritten(hybridpgm.save(net, tmp_path / "n.pt"), lambda payload: payload.pop("frozen", None))
    assert _trainable(hybridpgm.load(path)) == {"net.weight": True, "net.bias": False}


@pytest.mark.parametrize("entry, match", [
    (lambda names: names[0], r"holds a str as its 'frozen' entry, not a list of parameter names"),
    (lambda names: [names[0], "decoder.scale"],
     r"lists 'decoder.scale' as frozen parameters, which the rebuilt VAE does not have; the file was changed"),
], ids=["not-a-list", "unknown-name"])
def test_a_changed_record_is_refused_naming_the_file(entry, match, tmp_path):
    vae = hybridpgm.VAE(6, 2, [5])

    def change(payload):
        payload["frozen"] = entry([name for name, _ in vae.named_parameters()])

    path = _rewritten(hybridpgm.save(vae, tmp_path / "v.pt"), change)
    with pytest.raises(CheckpointError, match=r"model file '.*v\.pt' " + match):
        hybridpgm.load(path)
