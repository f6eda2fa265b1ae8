"""hybridpgm.save / hybridpgm.load (hybridpgm/serialization.py) and bad files: missing, foreign, tampered or
holding NaN ones refused, directories and refused writes named, devices not here a DeviceError."""

import pickle

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.gp import SVDeepKernelGP
from tests.serialization_families import _gp_lstm


def test_load_refuses_missing_foreign_and_tampered_files(tmp_path):
    with pytest.raises(CheckpointError, match="no model file"):
        hybridpgm.load(tmp_path / "none.pt")
    torch.save({"step": 1}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="not a hybridpgm model file"):
        hybridpgm.load(tmp_path / "ckpt.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "hybridpgm-model"}))
    with pytest.raises(CheckpointError, match="cannot read"):
        hybridpgm.load(tmp_path / "evil.pt")
    path = hybridpgm.save(RBM(4, 2), tmp_path / "rbm.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"]["class"] = "os.system"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="'os.system', which is not a registered hybridpgm class"):
        hybridpgm.load(path)


def test_a_tampered_torch_layer_is_refused_not_dropped(tmp_path):
    gp = SVDeepKernelGP(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), num_features=2, num_data=8,
                        inducing_points=torch.randn(4, 2))
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"]["spec"]["feature_extractor"]["__module__"]["layers"][1]["layer"] = "Bilinear"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="'Bilinear'"):
        hybridpgm.load(path)


def test_a_model_with_nan_weights_is_not_saved(tmp_path):
    """A model file, like a checkpoint, never holds non-finite parameters; the previous file is kept."""
    vae = VAE(8, 2, [4])
    path = tmp_path / "vae.pt"
    hybridpgm.save(vae, path)
    with torch.no_grad():
        vae.decoder[0].bias[1] = float("nan")
    with pytest.raises(CheckpointError, match=r"refusing to save VAE to .*\['decoder.0.bias'\] hold\(s\) NaN"):
        hybridpgm.save(vae, path)
    assert torch.isfinite(hybridpgm.load(path).decoder[0].bias).all()
    assert [p.name for p in tmp_path.iterdir()] == ["vae.pt"]


def test_infinite_buffers_of_a_gp_are_saved(tmp_path):
    """GPyTorch's unbounded constraints hold infinite buffers: allowed (parameters are not)."""
    gp, outputs = _gp_lstm()
    assert any(not torch.isfinite(b).all() for b in gp.buffers())
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    for a, b in zip(outputs(gp), outputs(loaded)):
        torch.testing.assert_close(a, b)


def test_save_to_a_directory_and_load_of_a_directory_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="cannot write model file .*: it is a directory"):
        hybridpgm.save(VAE(8, 2, [4]), tmp_path)
    with pytest.raises(CheckpointError, match="is a directory, not a model file"):
        hybridpgm.load(tmp_path)


@pytest.mark.parametrize("device, error, match", [("gpu", "ConfigError", "unknown device 'gpu'"),
                                                  ("cuda:7", "DeviceError", "cuda:7")])
def test_load_onto_a_device_not_here_is_a_device_error(tmp_path, device, error, match):
    """A malformed device name is a ConfigError (bad input), a device this machine lacks a DeviceError."""
    from hybridpgm import errors

    path = hybridpgm.save(VAE(8, 2, [4]), tmp_path / "vae.pt")
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(getattr(errors, error), match=match):
        hybridpgm.load(path, map_location=device)
    assert isinstance(hybridpgm.load(path, map_location="auto"), VAE)


def test_a_write_the_file_system_refuses_names_the_file(tmp_path, monkeypatch):
    import errno
    import os
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError, match=r"cannot write model file .*vae.pt'.*Permission denied \(EACCES\)"):
        hybridpgm.save(VAE(8, 2, [4]), tmp_path / "vae.pt")


def test_a_model_file_holding_nan_is_refused_naming_the_entry(tmp_path):
    path = hybridpgm.save(RBM(4, 2), tmp_path / "rbm.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["weight"][0, 0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model file '.*rbm.pt' holds NaN or infinity in \['weight'\]"):
        hybridpgm.load(path)
