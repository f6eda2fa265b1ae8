"""A :class:`~hybridpgm.train.history.FitResult` pickles, keeping each optimizer's state (hybridpgm/train/history.py).

Found by an audit: ``pickle.dumps(fit(...))`` raised ``TypeError: cannot pickle 'weakref.ReferenceType' object``
(the parameters of a Pyro objective carry Pyro's ``unconstrained`` weak reference), and so did ``torch.save``,
joblib and multiprocessing.
"""

import copy
import functools
import io
import pickle

import pytest
import torch

from hybridpgm import VAE, SVIObjective, fit
from hybridpgm.train import history as history_module
from tests.train.helpers import LinearRegression, regression_data


def _vae_result():
    """A short SVI run of a small VAE, whose optimizer's parameters carry Pyro's weak reference."""
    torch.manual_seed(0)
    x = (torch.rand(64, 16) < 0.3).float()
    vae = VAE(16, z_dim=2, hidden=[8])
    result = fit(SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=32, progress=False, seed=0)
    assert any("unconstrained" in vars(p) for p in vae.parameters())  # what made the pickle fail
    return vae, result, "elbo"


def _regression_result():
    objective = LinearRegression()
    result = fit(objective, regression_data(), epochs=2, batch_size=16, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    return objective.module, result, "fit"


def _pickled(result):
    return pickle.loads(pickle.dumps(result))


def _torch_saved(result):
    buffer = io.BytesIO()
    torch.save(result, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def _assert_same_state(a: dict, b: dict):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index, entries in a["state"].items():
        assert entries.keys() == b["state"][index].keys()
        for key, value in entries.items():
            other = b["state"][index][key]  # a kept state is on the CPU, a live one on the run's device
            assert torch.equal(value.cpu(), other.cpu()) if torch.is_tensor(value) else value == other


@pytest.mark.parametrize("roundtrip", [_pickled, _torch_saved], ids=["pickle", "torch.save"])
@pytest.mark.parametrize("run", [_vae_result, _regression_result], ids=["pyro_vae", "torch_regression"])
def test_an_unpickled_result_keeps_every_field_and_each_optimizers_state(run, roundtrip):
    module, result, player = run()
    live = result.optimizers[player]
    attributes = [sorted(vars(p)) for group in live.param_groups for p in group["params"]]
    copy_ = roundtrip(result)
    assert copy_.history == result.history and len(copy_.history.step) == result.steps
    assert (copy_.steps, copy_.device, copy_.stopped_early) == (result.steps, result.device, result.stopped_early)
    assert copy_.skipped_steps == result.skipped_steps and copy_.loss_explosions == result.loss_explosions
    # the optimizer comes back as its state, which loads into a fresh optimizer as the live one's would
    kept = copy_.optimizers[player]
    assert isinstance(kept, history_module.OptimizerState)
    assert kept.optimizer_type == f"{type(live).__module__}.{type(live).__qualname__}"
    assert repr(kept).startswith(f"OptimizerState({kept.optimizer_type}, ") and "not an optimizer" in repr(kept)
    _assert_same_state(kept.state_dict(), live.state_dict())
    fresh = type(live)(module.parameters(), lr=1.0)
    fresh.load_state_dict(kept.state_dict())
    _assert_same_state(fresh.state_dict(), live.state_dict())
    # pickling changed nothing of the live result: same optimizer, its parameters as they were
    assert result.optimizers[player] is live
    assert [sorted(vars(p)) for group in live.param_groups for p in group["params"]] == attributes
    # and an unpickled result pickles again, to the same
    again = _pickled(copy_)
    _assert_same_state(again.optimizers[player].state_dict(), live.state_dict())


def test_the_state_of_an_unpickled_optimizer_is_no_optimizer_and_says_how_to_use_it():
    module, result, player = _regression_result()
    kept = _pickled(result).optimizers[player]
    for name in ("step", "zero_grad", "param_groups", "add_param_group"):
        with pytest.raises(AttributeError, match=r"not the optimizer.*load_state_dict\(result\.optimizers"):
            getattr(kept, name)
    assert not isinstance(kept, torch.optim.Optimizer)
    # state_dict() is a new copy each time: an optimizer it was loaded into and then stepped leaves it unchanged
    before = kept.state_dict()
    fresh = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    fresh.load_state_dict(kept.state_dict())
    x, y = regression_data()
    ((module(x) - y) ** 2).mean().backward()
    fresh.step()
    _assert_same_state(kept.state_dict(), before)
    assert not torch.equal(fresh.state_dict()["state"][0]["momentum_buffer"], before["state"][0]["momentum_buffer"])


def test_copies_of_a_result_keep_live_optimizers():
    """Named guard (passes on the old code too): ``copy.copy`` and ``copy.deepcopy`` are no pickle and keep the
    live optimizers; a deepcopy of the module and the result together steps the copied module's parameters."""
    module, result, player = _vae_result()
    assert copy.copy(result).optimizers[player] is result.optimizers[player]
    module_copy, result_copy = copy.deepcopy((module, result))
    optimizer = result_copy.optimizers[player]
    assert isinstance(optimizer, torch.optim.Optimizer) and optimizer is not result.optimizers[player]
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == \
        {id(p) for p in module_copy.parameters()}
    assert result_copy.history == result.history and result_copy.history is not result.history


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pickles a result trained on CUDA")
def test_a_result_trained_on_cuda_keeps_its_optimizer_state_on_the_cpu():
    """So that a result pickled on a GPU machine unpickles on one without CUDA; loading the state moves it to
    the parameters' device."""
    objective = LinearRegression()
    result = fit(objective, regression_data(), epochs=1, batch_size=16, progress=False, seed=0, device="cuda")
    kept = _pickled(result).optimizers["fit"]
    state = kept.state_dict()["state"]
    assert state and all(v.device.type == "cpu" for entries in state.values() for v in entries.values()
                         if torch.is_tensor(v))
    assert _pickled(result).device == result.device and result.device.type == "cuda"
    fresh = torch.optim.Adam(objective.module.parameters())
    fresh.load_state_dict(kept.state_dict())
    assert fresh.state_dict()["state"][0]["exp_avg"].device.type == "cuda"
