"""BayesianRegressor's ``name=`` (hybridpgm/bayesian_nn.py): two regressors share one Pyro program under plain SVI,
every site, plate and parameter of each renamed; the default keeps every name as before."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch import nn
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule

from hybridpgm.bayesian_nn import BayesianRegressor
from hybridpgm.errors import ModelSpecError

X = torch.linspace(-1.0, 1.0, 16).reshape(8, 2)
Y1, Y2 = X.sum(-1), X[:, 0] - X[:, 1]


def _sites(fn, *args):
    """The sample sites of ``fn(*args)`` (a subsampled plate's own site among them)."""
    trace = pyro.poutine.trace(fn).get_trace(*args)
    return [name for name, site in trace.nodes.items() if site["type"] == "sample"]


def _plates(fn, *args):
    trace = pyro.poutine.trace(fn).get_trace(*args)
    return sorted({f.name for site in trace.nodes.values() if site["type"] == "sample"
                   for f in site["cond_indep_stack"]})


def test_the_default_keeps_every_name():
    """Guard (passes before and after): without ``name`` the sites, the plate and the param-store name of the noise
    are those of the previous release."""
    torch.manual_seed(0)
    model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=8)
    assert _sites(model, X, Y1) == ["net.weight", "net.bias", "data", "y"] and _plates(model, X, Y1) == ["data"]
    with pyro.get_param_store().scope():
        guide = AutoNormal(model)
        SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO()).step(X, Y1)
        assert "raw_noise" in pyro.get_param_store()
        assert sorted(k for k in pyro.get_param_store() if k.startswith("AutoNormal.locs")) == [
            "AutoNormal.locs.net.bias", "AutoNormal.locs.net.weight"]


def test_two_named_regressors_train_in_one_program_under_plain_svi():
    """The audit: both regressors had the plate ``"data"`` and the site ``"y"`` (and, side by side, the weight sites
    ``"net.weight"`` and the parameter ``"raw_noise"``), and there was no way to rename them."""
    torch.manual_seed(0)
    left = BayesianRegressor(torch.nn.Linear(2, 1), num_data=8, name="left")
    right = BayesianRegressor(torch.nn.Linear(2, 1), num_data=8, noise=0.5, name="right")

    def model(x, y1, y2):
        return left(x, y1), right(x, y2)

    assert _sites(model, X, Y1, Y2) == ["left.net.weight", "left.net.bias", "left.data", "left.y",
                                        "right.net.weight", "right.net.bias", "right.data", "right.y"]
    assert _plates(model, X, Y1, Y2) == ["left.data", "right.data"]
    with pyro.get_param_store().scope():
        guide = AutoNormal(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        noises = (left.noise.item(), right.noise.item())
        losses = [svi.step(X, Y1, Y2) for _ in range(5)]
        assert all(math.isfinite(loss) for loss in losses)
        store = pyro.get_param_store()
        assert store.param_name(left.raw_noise) == "left.raw_noise"
        assert store.param_name(right.raw_noise) == "right.raw_noise"
        assert left.noise.item() != noises[0] and right.noise.item() != noises[1]  # each trains its own
        assert abs(left.noise.item() - right.noise.item()) > 0.1
        locs = {k for k in store if k.startswith("AutoNormal.locs.")}
        assert locs == {f"AutoNormal.locs.{side}.net.{p}" for side in ("left", "right") for p in ("weight", "bias")}


def test_named_regressors_held_by_a_pyro_module():
    """The audit's program: two regressors as attributes of a user's PyroModule.  The weights were already named by
    the attribute; the plate and the likelihood collided ("Multiple sample sites named 'data'")."""

    class TwoHeads(PyroModule):
        def __init__(self):
            super().__init__()
            self.left = BayesianRegressor(torch.nn.Linear(2, 1), num_data=8, name="left")
            self.right = BayesianRegressor(torch.nn.Linear(2, 1), num_data=8, name="right")

        def forward(self, x, y1, y2):
            self.left(x, y1)
            self.right(x, y2)

    torch.manual_seed(0)
    heads = TwoHeads()
    assert _sites(heads, X, Y1, Y2) == ["left.net.weight", "left.net.bias", "left.data", "left.y",
                                        "right.net.weight", "right.net.bias", "right.data", "right.y"]
    with pyro.get_param_store().scope():
        svi = SVI(heads, AutoNormal(heads), pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
        assert all(math.isfinite(svi.step(X, Y1, Y2)) for _ in range(3))


@pytest.mark.parametrize("name, message", [
    ("reg$$$1", r"^BayesianRegressor name='reg\$\$\$1' holds '\$\$\$'"),
    (3, r"^BayesianRegressor name must be a string"),
])
def test_a_bad_name_is_refused_at_construction(name, message):
    with pytest.raises(ModelSpecError, match=message):
        BayesianRegressor(torch.nn.Linear(2, 1), num_data=8, name=name)


def test_a_named_regressor_keeps_its_name_through_save_and_load(tmp_path):
    """``hybridpgm.save``/``load`` bring back ``name``, so the loaded regressor's sites are the saved one's."""
    import hybridpgm

    torch.manual_seed(0)
    reg = BayesianRegressor(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), num_data=8, name="left")
    hybridpgm.save(reg, tmp_path / "reg.pt")
    loaded = hybridpgm.load(tmp_path / "reg.pt")
    trace = pyro.poutine.trace(loaded).get_trace(torch.randn(4, 2), torch.randn(4))
    assert loaded._module_name == "left" and "left.y" in trace.nodes and "left.data" in trace.nodes
