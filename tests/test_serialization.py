"""hybridpgm.save / hybridpgm.load: each model family, trained a few steps, comes back with equal outputs."""

import pickle

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import DBM, DBN, RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE, SigmoidBeliefNet
from hybridpgm.generative.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from hybridpgm.gp import GPLSTM, DeepKernelGP, SVDeepKernelGP
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from hybridpgm.graphs.crf import CRFHead
from hybridpgm.infer import RWS, ContrastiveDivergence, SVIObjective
from hybridpgm.serialization import load_model


def _steps(module, loss_fn, n=3, lr=0.05):
    """A few Adam steps on ``loss_fn()`` so the weights leave their initial values."""
    params = [p for p in module.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=lr)
    for _ in range(n):
        optim.zero_grad()
        loss_fn().backward()
        optim.step()


def _binary(n, d, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.3), generator=torch.Generator().manual_seed(seed))


def _vae():
    vae = VAE(12, 3, [8])
    hybridpgm.fit(SVIObjective(vae.model, vae.guide), _binary(32, 12), epochs=1, batch_size=8, progress=False,
                  device="cpu", seed=0)
    x = _binary(5, 12, 1)
    return vae, lambda m: (m.reconstruct(x), m.decoder(torch.ones(2, 3)), m.encoder(x))


def _sbn():
    sbn = SigmoidBeliefNet([12, 6, 3])
    hybridpgm.fit(RWS(sbn.model, sbn.guide, num_particles=2, max_plate_nesting=1), _binary(16, 12), epochs=1,
                  batch_size=8, progress=False, device="cpu", seed=0)
    x = _binary(4, 12, 1)
    return sbn, lambda m: tuple(p for p in m.parameters()) + (m.check_data(x),)


def _rbm():
    rbm = RBM(10, 4)
    hybridpgm.fit(ContrastiveDivergence(rbm, 1), _binary(16, 10), epochs=1, batch_size=8, progress=False,
                  device="cpu", seed=0)
    x = _binary(6, 10, 1)
    return rbm, lambda m: (m.free_energy(x), m.log_partition("exact"))


def _dbn():
    dbn = DBN([10, 6, 4])
    dbn.pretrain(_binary(16, 10), epochs=1, batch_size=8, progress=False)
    x = _binary(6, 10, 1)
    return dbn, lambda m: (m.transform(x),)


def _dbm():
    dbm = DBM([8, 4, 3])
    x = _binary(6, 8, 1)
    _steps(dbm, lambda: dbm.energy([x, torch.full((6, 4), 0.5), torch.full((6, 3), 0.5)]).mean())
    return dbm, lambda m: (m.mean_field(x)[-1], m.log_partition("exact"))


def _mlp_gan():
    g, d = MLPGenerator(3, 12, hidden=[8]), MLPDiscriminator(12, hidden=[8])
    z = torch.randn(5, 3)
    _steps(nn.ModuleList([g, d]), lambda: d(g(z)).mean())
    return g, d, lambda gd: (gd[0].eval()(z), gd[1].eval()(_binary(5, 12)))


def _conv_gan():
    g, d = ConvGenerator(3, (8, 8), width=4), ConvDiscriminator((8, 8), width=4)
    z = torch.randn(5, 3)
    _steps(nn.ModuleList([g, d]), lambda: d(g(z)).mean())
    return g, d, lambda gd: (gd[0].eval()(z), gd[1].eval()(_binary(5, 64)))


def _dkl():
    x, y = torch.randn(20, 3), torch.randn(20)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    gp = DeepKernelGP(x, y, net)
    _steps(gp, lambda: -gp.marginal_log_likelihood())
    xt = torch.randn(4, 3)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _sv_dkl():
    x, y = torch.randn(20, 3), torch.randn(20)
    gp = SVDeepKernelGP(nn.Sequential(nn.Linear(3, 2)), num_features=2, num_data=20, inducing_points=torch.randn(6, 2))
    _steps(gp, lambda: gp.features(x).pow(2).mean() + 0 * y.sum())
    xt = torch.randn(4, 3)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _gp_lstm():
    x, y = torch.randn(12, 5, 1), torch.randn(12)
    gp = GPLSTM(x, y, hidden_size=4, num_features=2)
    _steps(gp, lambda: -gp.marginal_log_likelihood())
    xt = torch.randn(3, 5, 1)
    return gp, lambda m: (m.predict(xt).mean, m.predict(xt).variance)


def _bayes_net():
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.8, 0.2]), states=["no", "yes"])
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.2, 0.8]], parents=["rain"]))
    bn.add("alarm", cpd.Neural(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), parents=["wet"]))
    _steps(bn, lambda: -bn.log_evidence({"alarm": torch.tensor([1, 0, 1])}).sum())
    return bn, lambda m: (m.posterior("rain", {"alarm": torch.tensor([1, 0])}),
                          m.posterior("wet", {"rain": "yes"}))


def _crf():
    head = CRFHead(3)
    unary = torch.randn(2, 4, 3)
    tags = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(0))
    _steps(head, lambda: -head(unary).log_prob(tags).mean())
    return head, lambda m: (m(unary).log_prob(tags), m(unary).argmax())


def _markov_net():
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(torch.randn(2, 3)))
    mrf.add_factors("pairs", [["a", "c"], ["c", "a"]], torch.randn(2, 2, 2))
    _steps(mrf, lambda: mrf.log_partition(method="exact"))
    return mrf, lambda m: (m.log_partition(method="exact"),)


FAMILIES = {"vae": _vae, "sbn": _sbn, "rbm": _rbm, "dbn": _dbn, "dbm": _dbm, "dkl": _dkl, "sv-dkl": _sv_dkl,
            "gp-lstm": _gp_lstm, "bayes-net": _bayes_net, "crf": _crf, "markov-net": _markov_net}


def _assert_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert torch.equal(torch.as_tensor(u), torch.as_tensor(v))


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


def test_a_model_file_holding_nan_is_refused_naming_the_entry(tmp_path):
    path = hybridpgm.save(RBM(4, 2), tmp_path / "rbm.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["weight"][0, 0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model file '.*rbm.pt' holds NaN or infinity in \['weight'\]"):
        hybridpgm.load(path)


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


def _zeros_skeleton():
    """The learn-then-reload pattern: a skeleton network (uniform table, no zeros) given a trained table's
    state dict, whose B | A = 0 row has structural zeros."""
    def network(table):
        return BayesNet().add("A", cpd.Table([0.5, 0.5])).add("B", table)

    trained = network(cpd.Table([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], ["A"]))
    skeleton = network(cpd.Table.uniform(3, [2], ["A"]))
    skeleton.load_state_dict(trained.state_dict())
    return trained, skeleton


def test_structural_zeros_loaded_into_a_skeleton_survive_save_and_load(tmp_path):
    """The file's constructor arguments say 'uniform'; the zeros are in the state dict.  Before, they were lost
    at the first load_state_dict already (the mask was not saved)."""
    trained, skeleton = _zeros_skeleton()
    loaded = hybridpgm.load(hybridpgm.save(skeleton, tmp_path / "bn.pt"))
    assert torch.equal(loaded.cpds["B"].probs, trained.cpds["B"].probs)
    evidence = {"A": torch.tensor([0, 0]), "B": torch.tensor([0, 1])}
    assert loaded.log_evidence(evidence)[1].item() == float("-inf")
    torch.testing.assert_close(loaded.log_evidence(evidence), trained.log_evidence(evidence))


def test_a_model_file_without_the_support_masks_still_loads(tmp_path):
    """A file written before the tables' masks were in the state dict loads (weights_only) with the masks of
    the tables its constructor arguments build."""
    trained, _ = _zeros_skeleton()
    path = hybridpgm.save(trained, tmp_path / "bn.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["state_dict"]["cpds.B.support"].dtype == torch.bool
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.endswith(".support")}
    torch.save(payload, path)
    loaded = hybridpgm.load(path)
    assert torch.equal(loaded.cpds["B"].probs, trained.cpds["B"].probs)


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
