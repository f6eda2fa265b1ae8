"""hybridpgm.save / load of constructor arguments that are torch values (hybridpgm.serialization_dtypes): dtypes,
devices and sizes are written as tagged plain data and rebuilt; a meta tensor argument is refused by name."""

import functools

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization import load_model, serializable


@serializable
class Held(nn.Module):
    """A user's model building a layer with ``dtype=`` / ``device=`` and keeping its other arguments."""

    def __init__(self, n, dtype=None, device=None, extra=None):
        super().__init__()
        self.lin = nn.Linear(n, 2, dtype=dtype, device=device)
        self.dtype, self.device, self.extra = dtype, device, extra


@serializable
class Where(nn.Module):
    """Keeps the device it was given, allocating nothing there (any recorded device can be loaded here)."""

    def __init__(self, device):
        super().__init__()
        self.where = device
        self.w = nn.Parameter(torch.ones(2))


def _rewrite(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload["model"]["spec"])
    torch.save(payload, path)


def test_a_float64_linear_built_with_dtype_saves_and_loads(tmp_path):
    """Found by an audit: ``nn.Linear(3, 2, dtype=torch.float64)`` inside a serializable model could not be saved
    ("a torch.dtype is not plain data")."""
    torch.manual_seed(0)
    model = Held(3, dtype=torch.float64)
    path = hybridpgm.save(model, tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["model"]["spec"]["dtype"] == {"__dtype__": "float64"}
    loaded = hybridpgm.load(path)
    assert loaded.dtype is torch.float64 and loaded.lin.weight.dtype == torch.float64
    assert torch.equal(loaded.lin.weight, model.lin.weight) and torch.equal(loaded.lin.bias, model.lin.bias)


def test_a_torch_layer_class_decorated_with_a_dtype_saves_and_loads(tmp_path):
    """``serializable`` on a torch layer class built with ``dtype=``; a subclass placed in a ``torch.nn`` module
    stands for torch's class, so that no class of torch is changed for the other tests."""

    class Linear(nn.Linear):
        pass

    Linear.__module__, Linear.__qualname__ = "torch.nn.modules.linear_stand_in", "Linear"
    serializable(Linear)
    layer = Linear(3, 4, dtype=torch.float64)
    loaded = hybridpgm.load(hybridpgm.save(layer, tmp_path / "lin.pt"))
    assert type(loaded) is Linear and loaded.weight.dtype == torch.float64
    assert torch.equal(loaded.weight, layer.weight) and torch.equal(loaded.bias, layer.bias)


def test_dtypes_in_lists_sizes_and_meta_values_come_back(tmp_path):
    model = Held(2, extra={"dtypes": (torch.float64, torch.long, torch.bool), "shape": torch.Size([2, 3])})
    saved = load_model(hybridpgm.save(model, tmp_path / "m.pt", dtype=torch.float16))
    assert saved.module.extra == {"dtypes": [torch.float64, torch.int64, torch.bool], "shape": torch.Size([2, 3])}
    assert type(saved.module.extra["shape"]) is torch.Size
    assert saved.meta == {"dtype": torch.float16}


def test_a_recorded_device_is_rebuilt_as_the_device_loaded_onto(tmp_path):
    """A device argument is recorded where the model was built (here a file from a GPU machine: ``cuda:1``) and
    loaded as ``map_location`` says, as the model's tensors are: a device replaces it, a dict maps its name, a
    function keeps it."""
    path = hybridpgm.save(Where(torch.device("cpu")), tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["model"]["spec"]["device"] == {"__device__": "cpu"}
    _rewrite(path, lambda spec: spec.update(device={"__device__": "cuda:1"}))
    assert hybridpgm.load(path).where == torch.device("cpu")
    assert hybridpgm.load(path, map_location={"cuda:1": "cpu"}).where == torch.device("cpu")
    assert load_model(path, map_location=lambda storage, location: storage).module.where == torch.device("cuda:1")
    model = Held(3, device=torch.device("cpu"))
    assert hybridpgm.load(hybridpgm.save(model, tmp_path / "h.pt")).device == torch.device("cpu")


@pytest.mark.parametrize("tag, value, message", [
    ("__dtype__", "float128", r"model file names dtype 'float128', which this torch does not have"),
    ("__dtype__", 3, r"model file names dtype 3, which this torch does not have"),
    ("__device__", "gpu!", r"model file names device 'gpu!', which is not a device name"),
    ("__size__", [2, -1], r"model file gives torch.Size \[2, -1\], which is not a list of non-negative ints"),
])
def test_a_changed_tag_is_refused_naming_the_value(tmp_path, tag, value, message):
    path = hybridpgm.save(Held(3, dtype=torch.float64), tmp_path / "m.pt")
    _rewrite(path, lambda spec: spec.update(dtype={tag: value}))
    with pytest.raises(CheckpointError, match=message):
        hybridpgm.load(path)


def test_other_values_are_still_refused_by_name(tmp_path):
    """Guard (refused before too): only an actual dtype or device is rebuilt; a string naming one stays a string."""
    with pytest.raises(CheckpointError, match=r"cannot save Held\(extra=\.\.\.\): a functools.partial is not plain "
                                              r"data"):
        hybridpgm.save(Held(3, extra=functools.partial(torch.zeros, 2)), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    loaded = hybridpgm.load(hybridpgm.save(Held(3, extra="float64"), tmp_path / "m.pt"))
    assert loaded.extra == "float64" and type(loaded.extra) is str


@serializable
class FromInit(nn.Module):
    def __init__(self, init):
        super().__init__()
        self.w = nn.Parameter(init.clone())


def test_a_tensor_argument_on_the_meta_device_is_refused_by_name(tmp_path):
    """Found by an audit: a model built from a meta tensor and given storage and weights (``to_empty``,
    ``load_state_dict``) still records the meta tensor as its constructor argument; saving it raised torch's
    ``NotImplementedError: Cannot copy out of meta tensor`` with nothing named."""
    model = FromInit(torch.empty(3, device="meta"))
    model.to_empty(device="cpu")
    model.load_state_dict({"w": torch.ones(3)})
    with pytest.raises(CheckpointError, match=r"^cannot save FromInit\(init=\.\.\.\): a tensor of shape \(3,\) on "
                                              r"torch's meta device, which holds no values"):
        hybridpgm.save(model, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())


@serializable
class Given(nn.Module):
    """Keeps the tensor it is given as it is: a parameter given as one is a weight, a tensor a plain attribute."""

    def __init__(self, table):
        super().__init__()
        self.table = table


def test_a_parameter_argument_comes_back_as_a_parameter(tmp_path):
    """Found by an audit: an ``nn.Parameter`` constructor argument was saved as a plain tensor, so the rebuilt
    model had no such weight and the file did not load ("Unexpected key(s) in state_dict: "table"")."""
    model = Given(nn.Parameter(torch.tensor([1.0, 2.0])))
    with torch.no_grad():
        model.table.mul_(3)  # trained after construction: the state dict's value is loaded
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "m.pt"))
    assert type(loaded.table) is nn.Parameter and loaded.table.requires_grad
    assert torch.equal(loaded.table, torch.tensor([3.0, 6.0])) and list(loaded.state_dict()) == ["table"]
    frozen = hybridpgm.load(hybridpgm.save(Given(nn.Parameter(torch.ones(2), requires_grad=False)), tmp_path / "f.pt"))
    assert type(frozen.table) is nn.Parameter and not frozen.table.requires_grad
    plain = hybridpgm.load(hybridpgm.save(Given(torch.ones(2)), tmp_path / "p.pt"))
    assert type(plain.table) is torch.Tensor and list(plain.state_dict()) == []
