"""An ``nn.Sequential`` argument holding a nested ``nn.Sequential`` or a module of a ``@serializable`` class saves,
and loads in a fresh process with bitwise-equal answers (hybridpgm/serialization_layers.py, ``sequential_spec``).

Found by the LOADTRAINED audit (session 39): ``nn.Sequential(backbone, head)`` was refused with "nn.Sequential
holds a Sequential; only [...] are rebuilt", though docs/quickstart.md says a network of these classes or an
``nn.Sequential`` of them is saved, and the message gave no way out.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.gp import DeepKernelGP

#: a user's module, in a module of its own that the loading process imports
_HEADS = '''
import torch
from torch import nn
from hybridpgm.serialization import serializable


@serializable
class Head(nn.Module):
    def __init__(self, d, out=2, scale=0.5):
        super().__init__()
        self.lin, self.scale = nn.Linear(d, out), scale
        self.register_buffer("shift", torch.linspace(-1.0, 1.0, out))

    def forward(self, x):
        return self.scale * self.lin(x) + self.shift
'''

#: the loading process: only hybridpgm (and the user's module) imported; the answers written for the test
_LOAD = '''
import sys, torch, hybridpgm
import feature_heads  # registers Head, as a user imports the module of their classes before loading
gp = hybridpgm.load(sys.argv[1])
x = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    pred = gp.predict(x)
    torch.save({"features": gp.features(x), "mean": pred.mean, "variance": pred.variance,
                "state": gp.state_dict(), "repr": repr(gp.feature_extractor)}, sys.argv[3])
'''


@pytest.fixture
def heads(tmp_path, monkeypatch):
    (tmp_path / "feature_heads.py").write_text(_HEADS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "feature_heads", raising=False)
    import feature_heads

    return feature_heads


def _networks(heads):
    return {
        "nested Sequential": lambda: nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2)),
        "serializable class in a Sequential": lambda: nn.Sequential(nn.Linear(3, 3), nn.Tanh(), heads.Head(3)),
        "both, two levels deep": lambda: nn.Sequential(
            nn.Sequential(nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5)), nn.ELU(0.5)),
            heads.Head(5, out=3, scale=2.0)),
        "hybridpgm.nn.mlp as a backbone": lambda: nn.Sequential(hybridpgm.nn.mlp([3, 6, 4]), nn.Tanh(),
                                                                nn.Linear(4, 2)),
    }


def _trained(net, x):
    torch.manual_seed(0)
    gp = DeepKernelGP(x, torch.randn(x.shape[0]), net)
    optim = torch.optim.Adam(gp.parameters(), lr=0.05)
    for _ in range(2):  # batch norms get statistics, weights move off their initial values
        optim.zero_grad()
        (-gp.marginal_log_likelihood()).backward()
        optim.step()
    return gp.eval()


@pytest.mark.parametrize("name", ["nested Sequential", "serializable class in a Sequential", "both, two levels deep",
                                  "hybridpgm.nn.mlp as a backbone"])
def test_a_nested_network_loads_in_a_fresh_process_with_equal_answers(name, heads, tmp_path):
    torch.manual_seed(1)
    x = torch.randn(12, 3)
    gp = _trained(_networks(heads)[name](), x)
    path = hybridpgm.save(gp, tmp_path / "gp.pt")
    torch.save(x, tmp_path / "x.pt")
    root = str(Path(hybridpgm.__file__).resolve().parents[1])  # the hybridpgm under test, not another install
    done = subprocess.run([sys.executable, "-c", _LOAD, str(path), str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": os.pathsep.join([str(tmp_path), root])})
    assert done.returncode == 0, done.stderr
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        pred = gp.predict(x)
        assert torch.equal(out["features"], gp.features(x))
    assert torch.equal(out["mean"], pred.mean) and torch.equal(out["variance"], pred.variance)
    state = gp.state_dict()
    assert list(out["state"]) == list(state)
    assert all(torch.equal(out["state"][k], v) for k, v in state.items())
    assert out["repr"] == repr(gp.feature_extractor)


def test_the_loaded_layers_are_of_the_saved_classes_and_options(heads, tmp_path):
    gp = _trained(_networks(heads)["both, two levels deep"](), torch.randn(12, 3))
    back = hybridpgm.load(hybridpgm.save(gp, tmp_path / "gp.pt")).feature_extractor
    assert type(back[0]) is nn.Sequential and type(back[0][0]) is nn.Sequential
    assert type(back[1]) is heads.Head and back[1].scale == 2.0 and back[1].lin.out_features == 3
    assert torch.equal(back[0][0][1].running_var, gp.feature_extractor[0][0][1].running_var)


def test_a_changed_layer_inside_a_nested_sequential_is_still_refused(tmp_path):
    inner = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    inner[1].register_forward_hook(lambda module, inputs, output: output * 2)
    gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(inner, nn.Linear(4, 2)))
    with pytest.raises(CheckpointError, match=r"feature_extractor=\.\.\.\)\[0\]\[1\]: the Tanh has forward hooks"):
        hybridpgm.save(gp, tmp_path / "gp.pt")
    assert not list(tmp_path.iterdir())


def test_a_layer_no_file_rebuilds_is_refused_with_the_ways_out(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    for layer, way in [(nn.RReLU(), "Hold the layer in a module class of your own decorated with "
                                            "hybridpgm.serialization.serializable"),
                       (Custom(), "Decorate Custom with hybridpgm.serialization.serializable")]:
        gp = DeepKernelGP(torch.randn(6, 3), torch.randn(6), nn.Sequential(nn.Linear(3, 2), nn.Sequential(layer)))
        with pytest.raises(CheckpointError, match=rf"\[1\]\[0\]: nn.Sequential holds a {type(layer).__name__}; .*"
                                                  rf"{way} .*or save the network's state_dict"):
            hybridpgm.save(gp, tmp_path / "gp.pt")
    assert not list(tmp_path.iterdir())
