"""hybridpgm.save / hybridpgm.load: each model family, trained a few steps, comes back with equal outputs."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.gp import DeepKernelGP
from hybridpgm.serialization import load_model
from tests.serialization_families import FAMILIES, _assert_equal, _conv_gan, _mlp_gan


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_load_gives_a_module_whose_outputs_equal_the_trained_ones(family, tmp_path):
    torch.manual_seed(0)
    model, outputs = FAMILIES[family]()
    model.eval()
    with torch.no_grad():
        expected = outputs(model)
    path = hybridpgm.save(model, tmp_path / "model.pt", dataset="toy", feature_shape=[12])
    saved = load_model(path)
    assert type(saved.module) is type(model) and saved.module is not model
    assert saved.meta == {"dataset": "toy", "feature_shape": [12]}
    assert set(saved.versions) == {"hybridpgm", "pyro", "torch", "gpytorch"}
    with torch.no_grad():
        _assert_equal(outputs(saved.module), expected)
    assert torch.load(path, weights_only=True)["format"] == "hybridpgm-model"


@pytest.mark.parametrize("build", [_mlp_gan, _conv_gan])
def test_gan_networks_round_trip(build, tmp_path):
    torch.manual_seed(0)
    g, d, outputs = build()
    with torch.no_grad():
        expected = outputs((g, d))
    hybridpgm.save(g, tmp_path / "g.pt")
    hybridpgm.save(d, tmp_path / "d.pt")
    loaded = (hybridpgm.load(tmp_path / "g.pt"), hybridpgm.load(tmp_path / "d.pt"))
    with torch.no_grad():
        _assert_equal(outputs(loaded), expected)


def test_the_file_holds_plain_data_and_the_constructor_arguments(tmp_path):
    path = hybridpgm.save(VAE(12, 3, (8, 5), likelihood="bernoulli"), tmp_path / "vae.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["model"] == {"class": "hybridpgm.generative.vae.VAE",
                                "spec": {"x_dim": 12, "z_dim": 3, "hidden": [8, 5], "likelihood": "bernoulli"}}
    assert hybridpgm.load(path).decoder[-1].out_features == 12


def test_unsavable_models_raise_an_error_naming_the_class(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(CheckpointError, match=r"class .*Custom is not serializable"):
        hybridpgm.save(Custom(), tmp_path / "custom.pt")

    with pytest.raises(CheckpointError, match="nn.Sequential holds a Custom"):
        hybridpgm.save(DeepKernelGP(torch.randn(5, 2), torch.randn(5), nn.Sequential(Custom())), tmp_path / "g.pt")
    assert not list(tmp_path.iterdir())


def test_an_object_whose_class_was_defined_again_is_refused_naming_the_redefinition(tmp_path):
    """Found by an audit of notebook workflows: a cell defining a @serializable class run twice (or a module
    reloaded), then the object built by the first run saved: the message said the class was not decorated.
    An object of the current class still saves and loads."""
    from hybridpgm.serialization import serializable

    cell = "@serializable\nclass Head(nn.Module):\n    def __init__(self, n):\n        super().__init__()\n" \
           "        self.lin = nn.Linear(n, 1)\n"
    scope = {"serializable": serializable, "nn": nn, "__name__": "notebook_cell"}
    exec(cell, scope)
    old = scope["Head"](3)
    exec(cell, scope)  # the cell run again
    with pytest.raises(CheckpointError, match=r"its class notebook_cell.Head was defined again after it was built "
                                              r"\(a notebook cell re-run, importlib.reload"):
        hybridpgm.save(old, tmp_path / "old.pt")
    hybridpgm.save(scope["Head"](3), tmp_path / "new.pt")
    assert type(hybridpgm.load(tmp_path / "new.pt")) is scope["Head"]


def test_numpy_scalar_constructor_arguments_are_saved_as_numbers(tmp_path):
    """The constructors accept NumPy integers (sizes read from an array's shape or a config); before, save
    refused them only after training ('a int64 is not plain data')."""
    import numpy as np

    from hybridpgm import VAE

    vae = VAE(np.int64(12), z_dim=np.int32(3), hidden=[np.int64(8)], min_scale=np.float32(1e-3))
    hybridpgm.save(vae, tmp_path / "vae.pt")
    loaded = hybridpgm.load(tmp_path / "vae.pt")
    assert (loaded.x_dim, loaded.z_dim) == (12, 3)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))


@pytest.mark.parametrize("make", [lambda: VAE(6, 2, hidden=[4]), lambda: RBM(6, 4)], ids=["VAE", "RBM"])
def test_load_leaves_the_callers_random_streams_alone(tmp_path, make):
    """load re-ran the constructor's random initialisation on torch's global generator: a seeded script's draws
    after a load differed from those without it."""
    import random

    import numpy as np

    path = hybridpgm.save(make(), tmp_path / "model.pt")

    def draws():
        return torch.rand(3), np.random.rand(), random.random()

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    hybridpgm.load(path)
    got = draws()
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
