"""hybridpgm.save / hybridpgm.load (hybridpgm/serialization.py) keep a model's dtypes: float64 models, mixed
dtypes, float64 GPs with a feature extractor (also onto CUDA), and the recorded dtypes of module arguments."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP
from tests.serialization_families import _binary


@pytest.mark.parametrize("build", [lambda: VAE(16, 3, [8]).double(), lambda: RBM(16, 4).double()],
                         ids=["VAE", "RBM"])
def test_a_float64_model_loads_as_float64(build, tmp_path):
    """Before, the model was rebuilt in the default dtype and load_state_dict cast the weights: a float64
    model came back float32, 1 + 1e-12 became 1.0, and it refused the float64 data it was trained on."""
    torch.manual_seed(0)
    model = build()
    first = next(model.parameters())
    with torch.no_grad():
        first.view(-1)[0] = 1 + 1e-12
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "m.pt"))
    assert {t.dtype for t in loaded.state_dict().values() if t.is_floating_point()} == {torch.float64}
    assert next(loaded.parameters()).view(-1)[0].item() == 1 + 1e-12
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    x = _binary(3, 16).double()
    if isinstance(model, VAE):
        assert loaded.reconstruct(x).dtype == torch.float64
        assert torch.equal(loaded.reconstruct(x), model.eval().reconstruct(x))
    else:
        assert torch.equal(loaded.free_energy(x), model.free_energy(x))
        assert loaded.free_energy(x).dtype == torch.float64


def test_a_model_with_mixed_dtypes_keeps_each(tmp_path):
    torch.manual_seed(0)
    vae = VAE(16, 3, [8])
    vae.decoder.double()
    with torch.no_grad():
        vae.decoder[0].weight[0, 0] = 1 + 1e-12
    loaded = hybridpgm.load(hybridpgm.save(vae, tmp_path / "m.pt"))
    saved = vae.state_dict()
    assert {k: v.dtype for k, v in loaded.state_dict().items()} == {k: v.dtype for k, v in saved.items()}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    assert loaded.decoder[0].weight.dtype == torch.float64 and loaded.encoder[0].weight.dtype == torch.float32


def _double_dkl():
    from hybridpgm.nn import mlp

    torch.manual_seed(0)
    x = torch.rand(20, 3, dtype=torch.float64)
    return DeepKernelGP(x, torch.sin(x[:, 0]), mlp([3, 8, 2]).double()).double(), x


@pytest.mark.parametrize("build", [
    _double_dkl,
    lambda: (DeepKernelGP(torch.rand(20, 3, dtype=torch.float64), torch.rand(20, dtype=torch.float64),
                          nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1)).double(),
                          grid_size=16).double(), torch.rand(5, 3, dtype=torch.float64)),
    lambda: (GPLSTM(torch.randn(12, 4, 1, dtype=torch.float64), torch.randn(12, dtype=torch.float64),
                    hidden_size=3, num_features=1).double(), torch.randn(5, 4, 1, dtype=torch.float64)),
    lambda: (SVDeepKernelGP(nn.Sequential(nn.Linear(3, 2)).double(), num_features=2, num_data=20,
                            inducing_points=torch.randn(6, 2, dtype=torch.float64)).double(),
             torch.rand(5, 3, dtype=torch.float64)),
], ids=["DeepKernelGP", "KISS-LayerNorm", "GPLSTM", "SVDeepKernelGP"])
def test_a_float64_gp_with_a_feature_extractor_loads_as_float64(build, tmp_path):
    """Before, the nn.Sequential argument was rebuilt in float32 and the constructor ran it on the float64
    training inputs (its probe), before the saved dtypes were restored: 'mat1 and mat2 must have the same
    dtype'.  Module arguments are now rebuilt in their saved dtypes first."""
    model, x = build()
    model.predict(x)  # an SVGP initializes q(u) (at random) on its first call
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "m.pt"))
    saved = model.state_dict()
    assert {k: v.dtype for k, v in loaded.state_dict().items()} == {k: v.dtype for k, v in saved.items()}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    expected, got = model.predict(x), loaded.predict(x)
    assert got.mean.dtype == torch.float64
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.variance, expected.variance)


def test_module_argument_dtypes_in_a_model_file_are_checked_and_optional(tmp_path):
    path = hybridpgm.save(_double_dkl()[0], tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    extractor = payload["model"]["spec"]["feature_extractor"]["__module__"]
    assert extractor["dtypes"] == {"0.weight": "float64", "0.bias": "float64", "2.weight": "float64",
                                   "2.bias": "float64"}
    extractor["dtypes"]["0.weight"] = "int64"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"torch.nn.Sequential weights dtypes \{'0.weight': 'int64'\}"):
        hybridpgm.load(path)
    # a float32 model written before module arguments carried their dtypes loads as it did
    torch.manual_seed(0)
    x = torch.rand(8, 3)
    model = DeepKernelGP(x, torch.rand(8), nn.Sequential(nn.Linear(3, 2), nn.Tanh()))
    path = hybridpgm.save(model, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["model"]["spec"]["feature_extractor"]["__module__"]["dtypes"]
    torch.save(payload, path)
    assert torch.equal(hybridpgm.load(path).predict(x).mean, model.predict(x).mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="loads onto CUDA")
@pytest.mark.parametrize("build", [_double_dkl,
                                   lambda: (GPLSTM(torch.randn(12, 4, 1), torch.randn(12), hidden_size=3,
                                                   num_features=1), torch.randn(5, 4, 1))],
                         ids=["DeepKernelGP", "GPLSTM"])
def test_a_gp_with_a_feature_extractor_loads_onto_cuda(build, tmp_path):
    """Found on an H200 (benchmarks/recipes_on_device.py): the extractor argument was rebuilt on the CPU and
    the constructor's probe ran it on the training inputs mapped to CUDA ('Expected all tensors to be on the
    same device'); GPLSTM built its LSTM on the CPU whatever the device of its windows."""
    model, x = build()
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "m.pt"), map_location="cuda")
    assert {p.device.type for p in loaded.parameters()} == {"cuda"}
    expected, got = model.predict(x), loaded.predict(x.cuda())
    assert torch.allclose(got.mean.cpu(), expected.mean, atol=1e-5)
