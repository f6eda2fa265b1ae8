"""The torch layers of an nn.Sequential argument come back from a model file with every constructor option, or
save refuses them (hybridpgm/serialization_layers.py)."""

import inspect

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.gp import DeepKernelGP
from hybridpgm.serialization_layers import TORCH_LAYERS

# each supported layer with options that are not its defaults (and the defaults), between Linear(3, 4) and
# a Linear(4, 2) head; the layer is the extractor's [1]
LAYERS = {
    "Linear": nn.Linear(4, 4), "Linear(bias=False)": nn.Linear(4, 4, bias=False),
    "ReLU": nn.ReLU(), "ReLU(inplace=True)": nn.ReLU(inplace=True), "Tanh": nn.Tanh(), "Sigmoid": nn.Sigmoid(),
    "ELU(alpha=0.5, inplace=True)": nn.ELU(0.5, inplace=True), "GELU(tanh)": nn.GELU("tanh"),
    "LeakyReLU(0.3, inplace=True)": nn.LeakyReLU(0.3, inplace=True), "Softplus(2, 5)": nn.Softplus(2.0, 5.0),
    "Identity": nn.Identity(), "Dropout(0.25, inplace=True)": nn.Dropout(0.25, inplace=True),
    "BatchNorm1d": nn.BatchNorm1d(4),
    "BatchNorm1d(affine=False)": nn.BatchNorm1d(4, affine=False),
    "BatchNorm1d(track_running_stats=False)": nn.BatchNorm1d(4, track_running_stats=False),
    "BatchNorm1d(eps, momentum=None)": nn.BatchNorm1d(4, eps=1e-3, momentum=None),
    "BatchNorm1d(momentum=0.5, affine=False, track_running_stats=False)":
        nn.BatchNorm1d(4, momentum=0.5, affine=False, track_running_stats=False),
    "LayerNorm": nn.LayerNorm(4),
    "LayerNorm(elementwise_affine=False)": nn.LayerNorm(4, elementwise_affine=False),
    "LayerNorm(bias=False, eps=1e-3)": nn.LayerNorm(4, eps=1e-3, bias=False),
}
#: BatchNorm1d takes bias= in torch 2.13, not in torch 2.5 (the lowest torch hybridpgm installs with)
BATCH_NORM_TAKES_BIAS = "bias" in inspect.signature(nn.BatchNorm1d).parameters
if BATCH_NORM_TAKES_BIAS:
    LAYERS["BatchNorm1d(bias=False)"] = nn.BatchNorm1d(4, bias=False)


#: the layers of a convolutional feature extractor, with options that are not their defaults: name -> (the
#: network, its input's shape); each layer is the network's [1]
_IMAGES, _SEQUENCES = (12, 2, 6, 6), (12, 2, 8)


def _conv2d(layer):
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), layer, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2))


def _conv1d(layer):
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), layer, nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(8, 2))


CONV_LAYERS = {
    "Conv2d(same, reflect, no bias)": (_conv2d(nn.Conv2d(4, 4, 3, padding="same", bias=False,
                                                         padding_mode="reflect")), _IMAGES),
    "Conv2d(stride, dilation, groups)": (_conv2d(nn.Conv2d(4, 4, (3, 2), stride=(1, 2), padding=2, dilation=2,
                                                           groups=2)), _IMAGES),
    "MaxPool2d": (_conv2d(nn.MaxPool2d((2, 2), stride=1, padding=1, ceil_mode=True)), _IMAGES),
    "AvgPool2d": (_conv2d(nn.AvgPool2d(3, stride=(1, 2), padding=1, count_include_pad=False, divisor_override=2)),
                  _IMAGES),
    "AdaptiveAvgPool2d((None, 3))": (_conv2d(nn.AdaptiveAvgPool2d((None, 3))), _IMAGES),
    "AdaptiveMaxPool2d": (_conv2d(nn.AdaptiveMaxPool2d(3)), _IMAGES),
    "BatchNorm2d": (_conv2d(nn.BatchNorm2d(4, momentum=0.3)), _IMAGES),
    "BatchNorm2d(affine=False)": (_conv2d(nn.BatchNorm2d(4, affine=False)), _IMAGES),
    "GroupNorm": (_conv2d(nn.GroupNorm(2, 4, eps=1e-3)), _IMAGES),
    "GroupNorm(affine=False)": (_conv2d(nn.GroupNorm(2, 4, affine=False)), _IMAGES),
    "Dropout2d": (_conv2d(nn.Dropout2d(0.2)), _IMAGES), "SiLU": (_conv2d(nn.SiLU(inplace=True)), _IMAGES),
    "Mish": (_conv2d(nn.Mish()), _IMAGES), "Hardtanh": (_conv2d(nn.Hardtanh(-0.5, 0.5)), _IMAGES),
    "PReLU": (_conv2d(nn.PReLU(4, init=0.1)), _IMAGES), "Softmax": (_conv2d(nn.Softmax(dim=1)), _IMAGES),
    "LogSoftmax": (_conv2d(nn.LogSoftmax(dim=1)), _IMAGES),
    "Conv1d": (_conv1d(nn.Conv1d(4, 4, 2, stride=2, padding_mode="circular", padding=1)), _SEQUENCES),
    "MaxPool1d": (_conv1d(nn.MaxPool1d(2, dilation=2)), _SEQUENCES),
    "AvgPool1d": (_conv1d(nn.AvgPool1d(3, padding=1, ceil_mode=True)), _SEQUENCES),
    "AdaptiveAvgPool1d": (_conv1d(nn.AdaptiveAvgPool1d(4)), _SEQUENCES),
    "AdaptiveMaxPool1d": (_conv1d(nn.AdaptiveMaxPool1d(4)), _SEQUENCES),
    "Dropout1d": (_conv1d(nn.Dropout1d(0.3, inplace=True)), _SEQUENCES),
    "Unflatten": (_conv1d(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (4, 8)))), _SEQUENCES),
}
if BATCH_NORM_TAKES_BIAS:
    CONV_LAYERS["BatchNorm2d(bias=False)"] = (_conv2d(nn.BatchNorm2d(4, bias=False)), _IMAGES)
if "bias" in inspect.signature(nn.GroupNorm).parameters:
    CONV_LAYERS["GroupNorm(bias=False)"] = (_conv2d(nn.GroupNorm(2, 4, bias=False)), _IMAGES)


def _round_trip(net, x, tmp_path):
    """Train a DKL on ``net`` a few steps (so batch norms have statistics), save, load; return both."""
    torch.manual_seed(0)
    gp = DeepKernelGP(x, torch.randn(x.shape[0]), net)
    optim = torch.optim.Adam(gp.parameters(), lr=0.05)
    for _ in range(2):
        optim.zero_grad()
        (-gp.marginal_log_likelihood()).backward()
        optim.step()
    gp.eval()
    loaded = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt"))
    return gp, loaded


def _assert_same_model(gp, loaded, x):
    saved = gp.state_dict()
    assert list(loaded.state_dict()) == list(saved)
    for name, value in saved.items():
        assert torch.equal(loaded.state_dict()[name], value), name
    for a, b in zip(gp.feature_extractor, loaded.feature_extractor):
        assert type(a) is type(b) and repr(a) == repr(b)
        assert {k: v for k, v in vars(a).items() if not k.startswith("_")} == \
               {k: v for k, v in vars(b).items() if not k.startswith("_")}
    with torch.no_grad():
        assert torch.equal(loaded.features(x), gp.features(x))
        expected, got = gp.predict(x), loaded.predict(x)
    assert torch.equal(got.mean, expected.mean) and torch.equal(got.variance, expected.variance)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_layer_and_option_round_trips(name, tmp_path):
    """Before, BatchNorm1d(affine=False), BatchNorm1d(track_running_stats=False) and LayerNorm(
    elementwise_affine=False) saved, then load failed with 'Missing key(s)'; inplace, bias=False of the norms
    and the like came back as the defaults."""
    x = torch.randn(12, 3)
    layer = LAYERS[name]
    gp, loaded = _round_trip(nn.Sequential(nn.Linear(3, 4), layer, nn.Linear(4, 2)), x, tmp_path)
    _assert_same_model(gp, loaded, x)


@pytest.mark.parametrize("name", sorted(CONV_LAYERS))
def test_each_layer_of_a_convolutional_extractor_round_trips(name, tmp_path):
    """Found by the LOADTRAINED audit (session 39): a convolutional feature extractor of a DKL was refused ("only
    [...] are rebuilt"), its message naming no way out.  A tuple option a pooling layer keeps as given comes back a
    tuple."""
    net, shape = CONV_LAYERS[name]
    torch.manual_seed(0)
    x = torch.randn(shape)
    gp, loaded = _round_trip(net, x, tmp_path)
    _assert_same_model(gp, loaded, x)


def test_every_supported_layer_is_exercised():
    exercised = {type(layer).__name__ for layer in LAYERS.values()} | {"Flatten"}
    for net, _ in CONV_LAYERS.values():
        exercised |= {type(layer).__name__ for layer in net.modules()} - {"Sequential"}
    assert exercised == set(TORCH_LAYERS)


def test_flatten_keeps_its_dims(tmp_path):
    """Before, Flatten(1, 2) came back as Flatten(1, -1) and the rebuilt extractor failed on the inputs."""
    x = torch.randn(10, 2, 3, 4)
    net = nn.Sequential(nn.Flatten(1, 2), nn.Linear(4, 1), nn.Flatten(), nn.Linear(6, 2))
    gp, loaded = _round_trip(net, x, tmp_path)
    assert (loaded.feature_extractor[0].start_dim, loaded.feature_extractor[0].end_dim) == (1, 2)
    _assert_same_model(gp, loaded, x)


def _with_extra_attribute():
    layer = nn.Linear(4, 4)
    layer.scale = 2.0
    return layer


def _without_running_mean():
    layer = nn.BatchNorm1d(4)
    layer.running_mean = layer.running_var = None  # batch statistics, though it still says it tracks them
    return layer


def _with_a_weightless_layer_norm():
    layer = nn.LayerNorm(4)
    layer.weight = None
    return layer


def _with_a_reshaped_weight():
    layer = nn.Linear(1, 4)
    layer.weight = nn.Parameter(torch.randn(4, 4))  # runs on 4 features, though in_features says 1
    return layer


def _with_a_hook():
    layer = nn.Tanh()
    layer.register_forward_hook(lambda module, inputs, output: output * 2)
    return layer


def _with_a_buffer():
    layer = nn.Tanh()
    layer.register_buffer("temperature", torch.ones(()))
    return layer


@pytest.mark.parametrize("build, match", [
    (_with_extra_attribute, r"\[1\]: the Linear's attribute scale=2.0"),
    (_without_running_mean, r"\[1\]: its running_mean is an empty buffer slot \(None\), but the options saved "
                            r"for it, BatchNorm1d\(.*track_running_stats=True\), give a buffer of shape \(4,\)"),
    (_with_a_weightless_layer_norm, r"\[1\]: its weight is an empty parameter slot \(None\).*elementwise_affine"),
    (_with_a_reshaped_weight,
     r"\[1\]: its weight is a parameter of shape \(4, 4\), but .*in_features=1.* shape \(4, 1\)"),
    (_with_a_hook, r"\[1\]: the Tanh has forward hooks"),
    (_with_a_buffer, r"\[1\]: its temperature is a buffer of shape \(\), but .* give absent"),
], ids=["attribute", "running-mean", "layer-norm-weight", "weight-shape", "hook", "buffer"])
def test_a_layer_its_options_do_not_rebuild_is_refused_at_save(build, match, tmp_path):
    """Never write a file that loads back as another network: the refusal names the layer's path and what
    differs, and nothing is written."""
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(nn.Linear(3, 4), build(), nn.Linear(4, 2)))
    with pytest.raises(CheckpointError, match=r"cannot save DeepKernelGP\(feature_extractor=\.\.\.\)" + match):
        hybridpgm.save(gp, tmp_path / "gp.pt")
    assert not list(tmp_path.iterdir())


def test_a_pyro_module_layer_in_a_plain_network_is_refused(tmp_path):
    from pyro.nn import PyroModule

    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(PyroModule[nn.Linear](3, 2)))
    with pytest.raises(CheckpointError, match=r"\[0\]: nn.Sequential holds a PyroLinear"):
        hybridpgm.save(gp, tmp_path / "gp.pt")


def test_an_unknown_option_in_a_model_file_is_refused(tmp_path):
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    payload = torch.load(path, weights_only=True)
    layers = payload["model"]["spec"]["feature_extractor"]["__module__"]["layers"]
    assert layers[1] == {"layer": "BatchNorm1d", "args": {"num_features": 4, "eps": 1e-5, "momentum": 0.1,
                                                          "affine": True, "track_running_stats": True}}
    layers[1]["args"]["device"] = "cuda"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"options \['device'\], which hybridpgm does not rebuild"):
        hybridpgm.load(path)


class _BatchNorm1dWithoutBias(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` as torch 2.5 has it: no ``bias=``."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)


def test_a_file_with_an_option_this_torch_lacks_names_the_torch_it_needs(tmp_path, monkeypatch):
    """A ``BatchNorm1d(bias=False)`` file (torch 2.13) read where ``BatchNorm1d`` takes no ``bias=`` (torch 2.5,
    simulated): before, the load failed with torch's "_BatchNorm.__init__() got an unexpected keyword argument
    'bias'"."""
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    payload = torch.load(path, weights_only=True)
    layers = payload["model"]["spec"]["feature_extractor"]["__module__"]["layers"]
    layers[1]["args"]["bias"] = False  # what layer_spec writes for BatchNorm1d(4, bias=False)
    del payload["state_dict"]["feature_extractor.1.bias"]
    torch.save(payload, path)
    monkeypatch.setattr(nn, "BatchNorm1d", _BatchNorm1dWithoutBias)
    with pytest.raises(CheckpointError, match=r"gives the BatchNorm1d at torch\.nn\.Sequential\[1\] the option "
                                              r"bias=False, which nn\.BatchNorm1d of this torch \(.+\) does not "
                                              r"take: the file needs a torch whose BatchNorm1d takes bias="):
        hybridpgm.load(path)


def test_a_file_without_the_new_options_loads_with_the_defaults(tmp_path):
    """Files written before every option was recorded hold only some of them: the rest take their defaults."""
    x = torch.randn(8, 3)
    gp = DeepKernelGP(x, torch.randn(8), nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Flatten(),
                                                       nn.BatchNorm1d(4), nn.Linear(4, 2))).eval()
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    payload = torch.load(path, weights_only=True)
    extractor = payload["model"]["spec"]["feature_extractor"]["__module__"]
    for layer, old in zip(extractor["layers"], [("in_features", "out_features"), (), (),
                                                ("num_features", "eps", "momentum"),
                                                ("in_features", "out_features")]):
        layer["args"] = {k: v for k, v in layer["args"].items() if k in old}
    torch.save(payload, path)
    with torch.no_grad():
        assert torch.equal(hybridpgm.load(path).predict(x).mean, gp.predict(x).mean)


@pytest.mark.parametrize("layer", [nn.Linear(3, 2), nn.LayerNorm(3), nn.Identity()], ids=["Linear", "LayerNorm",
                                                                                          "Identity"])
def test_a_supported_layer_alone_round_trips(layer, tmp_path):
    """A supported layer given alone (not in an nn.Sequential) is saved as that layer and loads back as it.
    Before, save refused it, telling the user to decorate torch's own class with @serializable."""
    x = torch.randn(12, 3)
    gp, loaded = _round_trip(layer, x, tmp_path)
    assert type(loaded.feature_extractor) is type(layer) and repr(loaded.feature_extractor) == repr(layer)
    assert list(loaded.state_dict()) == list(gp.state_dict())
    for name, value in gp.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded.predict(x).mean, gp.predict(x).mean)
    extractor = torch.load(tmp_path / "gp.pt", weights_only=True)["model"]["spec"]["feature_extractor"]["__module__"]
    assert extractor["class"] == f"torch.nn.{type(layer).__name__}"
    assert extractor["layer"]["layer"] == type(layer).__name__


def test_a_neural_cpd_over_a_bare_layer_round_trips(tmp_path):
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("b", cpd.Neural(nn.Identity(), ["a"], 2))
    bn.add("c", cpd.Neural(nn.Linear(2, 3), ["b"], 3))
    loaded = hybridpgm.load(hybridpgm.save(bn, tmp_path / "bn.pt"))
    assert type(loaded.cpds["b"].net) is nn.Identity and type(loaded.cpds["c"].net) is nn.Linear
    torch.testing.assert_close(loaded.posterior("a", {"c": 2}), bn.posterior("a", {"c": 2}), rtol=0, atol=0)


def test_a_bare_layer_its_options_do_not_rebuild_is_refused(tmp_path):
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Linear(3, 2))
    gp.feature_extractor.scale = 2.0
    with pytest.raises(CheckpointError, match=r"cannot save DeepKernelGP\(feature_extractor=\.\.\.\): the Linear's "
                                              r"attribute scale=2.0"):
        hybridpgm.save(gp, tmp_path / "gp.pt")
    assert not list(tmp_path.iterdir())


def test_another_torch_layer_is_refused_with_advice_that_works(tmp_path):
    """A torch.nn class no file rebuilds: the message lists the layers that are rebuilt and says to hold the layer
    in a class of one's own; before, it said to decorate torch's own class with @serializable."""
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Softsign())
    with pytest.raises(CheckpointError, match=r"cannot save DeepKernelGP\(feature_extractor=\.\.\.\): it is a "
                                              r"torch.nn.Softsign, which a model file does not rebuild; only \[.*\] "
                                              r"are rebuilt \(alone or in an nn.Sequential\).  Hold the layer in a "
                                              r"module class of your own decorated with"):
        hybridpgm.save(gp, tmp_path / "gp.pt")


def test_a_torch_class_decorated_by_the_user_saves_with_its_constructor_arguments(tmp_path):
    """Found by a review: decorating a class of ``torch.nn`` with ``serializable`` (which saved it before) was
    refused as "a torch.nn.Conv1d, which a model file does not rebuild".  A subclass placed in a ``torch.nn``
    module stands for torch's class here, so that no class of torch is changed for the other tests."""
    from hybridpgm.serialization import load, save, serializable

    class Conv(nn.Conv1d):
        pass

    Conv.__module__, Conv.__qualname__ = "torch.nn.modules.conv_stand_in", "Conv"
    serializable(Conv)
    conv = Conv(2, 3, 3)
    save(conv, tmp_path / "conv.pt")
    back = load(tmp_path / "conv.pt")
    assert type(back) is Conv and torch.equal(back.weight, conv.weight) and back.kernel_size == (3,)
