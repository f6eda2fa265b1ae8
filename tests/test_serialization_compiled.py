"""A model holding modules wrapped by ``torch.compile`` saves as the plain model and loads with its weights
(hybridpgm/serialization_compiled.py).

Before, ``model.encoder = torch.compile(model.encoder)`` made :func:`hybridpgm.save` write the weights under
``encoder._orig_mod.*``, which :func:`hybridpgm.load` then refused (missing and unexpected keys), and a compiled
constructor argument or a compiled model as a whole was refused at save time.
"""

import torch
from torch import nn

import hybridpgm
from hybridpgm.generative import VAE
from hybridpgm.gp import DeepKernelGP
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.serialization_compiled import plain_names, plain_ties


def _compiled(module):
    return torch.compile(module, backend="eager")


def _moved(module, seed=1):
    """``module`` with every parameter moved off its initial value (so a load of fresh weights would show)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    return module


def _stored_names(path):
    return list(torch.load(path, weights_only=True)["state_dict"])


def test_a_model_with_a_compiled_submodule_loads_as_the_plain_model_with_its_weights(tmp_path):
    torch.manual_seed(0)
    vae = _moved(VAE(6, 2, [8]))
    vae.encoder = _compiled(vae.encoder)
    assert any("_orig_mod" in k for k in vae.state_dict())  # what torch names the compiled encoder's weights
    path = hybridpgm.save(vae, tmp_path / "vae.pt")
    assert _stored_names(path) == list(VAE(6, 2, [8]).state_dict())  # the plain model's names, in its order
    loaded = hybridpgm.load(path)
    assert type(loaded) is VAE and type(loaded.encoder) is nn.Sequential
    x, z = torch.rand(5, 6), torch.randn(3, 2)
    vae.eval()
    with torch.no_grad():
        for mine, theirs in zip(vae.encoder(x), loaded.encoder(x)):  # the compiled encoder itself runs here
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        torch.testing.assert_close(vae.decoder(z), loaded.decoder(z), rtol=0, atol=0)
    for (name, p), (name_loaded, q) in zip(vae.encoder._orig_mod.named_parameters(),
                                           loaded.encoder.named_parameters()):
        assert name == name_loaded and torch.equal(p, q)


def test_a_compiled_model_saves_as_the_model_it_compiles(tmp_path):
    torch.manual_seed(0)
    vae = _moved(VAE(6, 2, [8]))
    path = hybridpgm.save(_compiled(vae), tmp_path / "vae.pt")
    loaded = hybridpgm.load(path)
    assert type(loaded) is VAE
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))


def test_compiled_constructor_arguments_save_as_the_modules_they_compile(tmp_path):
    torch.manual_seed(0)
    net = _moved(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)))
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Neural(_compiled(net), ["a"], 2))
    extractor = _moved(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), seed=2)
    train_x, train_y = torch.randn(10, 3), torch.randn(10)
    gp = DeepKernelGP(train_x, train_y, _compiled(extractor))
    bn_loaded = hybridpgm.load(hybridpgm.save(bn, tmp_path / "bn.pt"))
    gp_loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    assert type(bn_loaded.cpds["b"].net) is nn.Sequential
    with torch.no_grad():
        expected = BayesNet()
        expected.add("a", cpd.Table([0.3, 0.7]))
        expected.add("b", cpd.Neural(net, ["a"], 2))  # the same network, not compiled
        torch.testing.assert_close(bn_loaded.posterior("a", {"b": 1}), expected.posterior("a", {"b": 1}),
                                   rtol=0, atol=0)
        x = torch.randn(4, 3)
        torch.testing.assert_close(gp_loaded.feature_extractor(x), extractor(x), rtol=0, atol=0)
        gp.eval()
        torch.testing.assert_close(gp_loaded.predict(x).mean, gp.predict(x).mean)


def test_a_network_held_compiled_and_plain_is_one_network_again_after_load(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    wrapper = _compiled(net)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.4, 0.6]))
    bn.add("b", cpd.Neural(wrapper, ["a"], 2))
    bn.add("c", cpd.Neural(wrapper, ["b"], 2))  # one compiled network in two CPDs
    bn.add("d", cpd.Neural(net, ["c"], 2))  # and the network it compiles, plain, in a third
    loaded = hybridpgm.load(hybridpgm.save(bn, tmp_path / "bn.pt"))
    nets = [loaded.cpds[name].net for name in "bcd"]
    assert nets[0] is nets[1] is nets[2] and type(nets[0]) is nn.Sequential


def test_plain_names_undo_nested_wrappers_and_leave_a_plain_child_named_orig_mod_alone():
    inner = nn.ModuleDict({"b": _compiled(nn.Linear(2, 2))})
    outer = nn.ModuleDict({"a": _compiled(inner), "c": nn.Linear(2, 1)})
    plain = plain_names(outer)
    assert [plain(k) for k in outer.state_dict()] == ["a.b.weight", "a.b.bias", "c.weight", "c.bias"]
    assert plain("a._orig_mod") == "a" and plain("a._orig_mod.b._orig_mod") == "a.b"
    not_compiled = nn.ModuleDict({"_orig_mod": nn.Linear(2, 2)})  # a child of that name that wraps nothing
    assert [plain_names(not_compiled)(k) for k in not_compiled.state_dict()] == ["_orig_mod.weight", "_orig_mod.bias"]


def test_plain_ties_merge_the_groups_that_come_to_share_a_name():
    record = {"modules": [["x", "y"], ["x._orig_mod", "z"]], "parameters": [["x._orig_mod.w", "q"]], "buffers": []}
    plain = lambda name: name.replace("._orig_mod", "")  # noqa: E731  (as plain_names gives for a wrapper at "x")
    assert plain_ties(record, plain) == {"modules": [["x", "y", "z"]], "parameters": [["x.w", "q"]], "buffers": []}


def test_a_compiled_layer_inside_a_sequential_saves_as_the_layer(tmp_path):
    """A layer of an ``nn.Sequential`` replaced by its compiled wrapper is rebuilt as the plain layer, as a compiled
    network is (it was refused as "nn.Sequential holds a OptimizedModule", a message that named no compile)."""
    torch.manual_seed(0)
    layer = _moved(nn.Linear(3, 2))
    gp = DeepKernelGP(torch.randn(10, 3), torch.randn(10), nn.Sequential(_compiled(layer), nn.Tanh()))
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    assert "feature_extractor.0.weight" in _stored_names(path)
    loaded = hybridpgm.load(path)
    assert type(loaded.feature_extractor[0]) is nn.Linear
    x = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.feature_extractor(x), torch.tanh(layer(x)), rtol=0, atol=0)
