"""``hybridpgm.save`` of a model on torch's meta device, and of a module that refuses to be saved as it is
(``_hybridpgm_save_refusal``, hybridpgm.serialization)."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.serialization import serializable


def test_a_model_on_the_meta_device_is_refused_naming_its_entries(tmp_path):
    """Found by an audit: saving a model moved to the meta device (``model.to("meta")``, no values) raised
    torch's ``NotImplementedError: Cannot copy out of meta tensor`` with no model or file named."""
    vae = VAE(8, 2, [4]).to("meta")
    count = len(list(vae.parameters())) + len(list(vae.buffers()))
    with pytest.raises(CheckpointError, match=rf"refusing to save VAE to '.*vae.pt': {count} "
                                              r"parameter\(s\)/buffer\(s\) on torch's meta device, which holds no "
                                              rf"values \('encoder\..*' and {count - 5} more\); .*to_empty.*"
                                              r"load_state_dict"):
        hybridpgm.save(vae, tmp_path / "vae.pt")
    assert not list(tmp_path.iterdir())


def test_a_model_given_storage_and_weights_again_saves_and_loads(tmp_path):
    """Guard (passes before the fix too): after ``to_empty`` and ``load_state_dict`` the model saves as usual."""
    vae = VAE(8, 2, [4])
    state = vae.state_dict()
    vae.to("meta").to_empty(device="cpu")
    vae.load_state_dict(state)
    loaded = hybridpgm.load(hybridpgm.save(vae, tmp_path / "vae.pt"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state.values()))


def test_a_module_refusing_to_be_saved_is_refused_with_its_reason_and_where_it_is(tmp_path):
    """A module whose ``_hybridpgm_save_refusal()`` gives a reason is not written, alone or as a module argument of
    another (the message names where it is); ``None`` lets it save."""
    cell = ("@serializable\nclass Part(nn.Module):\n    def __init__(self, n, reason=None):\n"
            "        super().__init__()\n        self.lin = nn.Linear(n, 1)\n        self.reason = reason\n"
            "    def _hybridpgm_save_refusal(self):\n        return self.reason\n"
            "@serializable\nclass Whole(nn.Module):\n    def __init__(self, part):\n        super().__init__()\n"
            "        self.part = part\n")
    scope = {"serializable": serializable, "nn": nn, "__name__": "refusal_cell"}
    exec(cell, scope)
    part, whole = scope["Part"], scope["Whole"]
    with pytest.raises(CheckpointError, match=r"^cannot save Part: its data are gone$"):
        hybridpgm.save(part(3, "its data are gone"), tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match=r"^cannot save Whole\(part=\.\.\.\): its data are gone$"):
        hybridpgm.save(whole(part(3, "its data are gone")), tmp_path / "w.pt")
    assert not list(tmp_path.iterdir())
    assert type(hybridpgm.load(hybridpgm.save(whole(part(3)), tmp_path / "w.pt")).part) is part


@pytest.mark.parametrize("map_location", ["meta", torch.device("meta"), {"cpu": "meta"}])
def test_loading_onto_the_meta_device_is_refused_saying_what_to_do(map_location, tmp_path):
    """Found by the LOADTRAINED audit (session 39): load's docstring took "what torch.load takes", torch.load takes
    "meta", and load refused it as an "unsupported device 'meta'" naming neither the file nor a way out (a dict
    mapping to meta went further, into the build).  Loading on the CPU and then ``.to("meta")`` works."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.energy import RBM

    path = hybridpgm.save(RBM(10, 4).double(), tmp_path / "rbm.pt")
    with pytest.raises(ConfigError, match=r"hybridpgm.load does not take torch's meta device \(map_location=.*\) for "
                                          r"'.*rbm.pt': .*Load it on 'cpu' and call .to\('meta'\)"):
        hybridpgm.load(path, map_location=map_location)
    with pytest.raises(ConfigError, match=r"and \['state_dict'\], its weights, whose shapes are read without "
                                          r"copying them \(the file is mapped\)$"):
        hybridpgm.load(path, map_location=map_location)
    mapped = torch.load(path, weights_only=True, mmap=True)  # the route the message gives: shapes, no copy
    assert {k: tuple(v.shape) for k, v in mapped["state_dict"].items()}["weight"] == (10, 4)
    skeleton = hybridpgm.load(path).to("meta")
    assert skeleton.weight.is_meta and skeleton.weight.dtype == torch.float64
