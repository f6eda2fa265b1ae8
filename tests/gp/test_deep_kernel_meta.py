"""DeepKernelGP / GPLSTM on torch's meta device: ``model.to("meta")``, then ``to_empty`` and ``load_state_dict``.

The training data are non-persistent buffers (not in the state dict): after the meta round trip they have
storage but no values, so the model refuses them by name until ``set_train_data`` gives them back (it used to
condition on whatever memory ``to_empty`` handed out and predict garbage without a word).  The same holds for the
data a conditioned GP (``model.condition()``) keeps, ``hybridpgm.save`` refuses such a model, and the refusal
goes with ``copy.deepcopy``.  The SV-DKL model holds no data outside its state dict (guards below).
"""

import copy
import io

import gpytorch
import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError, DataError
from hybridpgm.gp import GPLSTM, DeepKernelGP, SemiStochasticObjective, SVDeepKernelGP

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
)


def _data(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _models():
    torch.manual_seed(0)
    x, y = _data((20, 3), 1), _data((20,), 2)
    return {
        "exact": (DeepKernelGP(x, y, nn.Sequential(nn.Linear(3, 2), nn.Tanh()).double()), x, y, _data((4, 3), 3)),
        "kiss": (DeepKernelGP(x, y, nn.Sequential(nn.Linear(3, 1), nn.Tanh()).double(), grid_size=16), x, y,
                 _data((4, 3), 3)),
        "gp_lstm": (GPLSTM(_data((12, 4, 1), 4), _data((12,), 5), hidden_size=3, num_features=2),
                    _data((12, 4, 1), 4), _data((12,), 5), _data((3, 4, 1), 6)),
    }


def _through_meta(model: nn.Module) -> nn.Module:
    """A copy of ``model`` moved to the meta device, given empty CPU storage, and loaded with ``model``'s state."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    empty = copy.deepcopy(model).to("meta")
    assert all(t.is_meta for t in list(empty.parameters()) + list(empty.buffers()))
    empty.to_empty(device="cpu")
    empty.load_state_dict(state)
    return empty


@pytest.mark.parametrize("name", ["exact", "kiss", "gp_lstm"])
def test_after_the_meta_round_trip_the_training_data_are_refused_by_name(name):
    model, _, _, x_test = _models()[name]
    restored = _through_meta(model)
    cls = type(model).__name__
    with pytest.raises(DataError, match=rf"{cls}'s training data .*meta device.*set_train_data"):
        restored.predict(x_test)
    with pytest.raises(DataError, match=rf"{cls}'s training data .*meta device"):
        restored.marginal_log_likelihood()
    with pytest.raises(DataError, match=rf"{cls}'s training data .*meta device"):
        restored.condition()


def test_gp_lstm_objective_refuses_the_lost_training_data():
    model = _models()["gp_lstm"][0]
    with pytest.raises(DataError, match=r"GPLSTM's training data .*meta device"):
        SemiStochasticObjective(_through_meta(model)).dataset()


@pytest.mark.parametrize("name", ["exact", "kiss", "gp_lstm"])
def test_set_train_data_after_the_meta_round_trip_gives_the_original_model(name):
    """Guard (passes before the fix too): the refusal clears with ``set_train_data``, and the round trip plus the
    data give the original model exactly."""
    model, x, y, x_test = _models()[name]
    restored = _through_meta(model)
    restored.set_train_data(x, y)
    want, got = model.predict(x_test), restored.predict(x_test)
    assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)
    assert torch.equal(restored.marginal_log_likelihood(), model.marginal_log_likelihood())


def test_moves_off_the_meta_device_keep_the_training_data():
    """Guard (passes before the fix too): other conversions (dtype, a CPU to CPU move) keep the data usable."""
    model, _, _, x_test = _models()["exact"]
    want = model.predict(x_test).mean
    model.to("cpu").float().double()
    assert torch.allclose(model.predict(x_test).mean, want)


@pytest.mark.parametrize("name", ["exact", "kiss", "gp_lstm"])
def test_save_refuses_a_model_whose_training_data_went_to_the_meta_device(name, tmp_path):
    """Found by an audit: the file recorded the garbage ``to_empty`` left in the training data as the constructor
    arguments, and the loaded model predicted from it with no refusal."""
    model, x, y, x_test = _models()[name]
    restored = _through_meta(model)
    cls = type(model).__name__
    with pytest.raises(CheckpointError, match=rf"cannot save {cls}: {cls}'s training data .*meta device.*"
                                              r"set_train_data\(x, y\) before saving it"):
        hybridpgm.save(restored, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())
    restored.set_train_data(x, y)  # the data given again: it saves, and loads as the original model
    loaded = hybridpgm.load(hybridpgm.save(restored, tmp_path / "m.pt"))
    want, got = model.predict(x_test), loaded.predict(x_test)
    assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)


def test_save_refuses_a_lost_data_model_held_as_an_argument_of_another(tmp_path):
    """A model file records a module argument by its own constructor arguments: the refusal names where it is."""
    from hybridpgm.serialization import serializable

    cell = ("@serializable\nclass Holder(nn.Module):\n    def __init__(self, gp):\n        super().__init__()\n"
            "        self.gp = gp\n")
    scope = {"serializable": serializable, "nn": nn, "__name__": "meta_cell"}
    exec(cell, scope)
    holder = scope["Holder"](_through_meta(_models()["exact"][0]))
    with pytest.raises(CheckpointError, match=r"cannot save Holder\(gp=\.\.\.\): DeepKernelGP's training data .*"
                                              r"set_train_data"):
        hybridpgm.save(holder, tmp_path / "h.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["exact", "kiss", "gp_lstm"])
def test_the_refusal_survives_deepcopy_and_a_state_dict_round_trip(name):
    """Guard (passes before the fix too): a deep copy of the model refuses as it does, loading a state dict (its
    own, through torch.save) does not clear the refusal, and that state dict loaded into a model with data gives
    the original model."""
    model, _, _, x_test = _models()[name]
    restored = _through_meta(model)
    with pytest.raises(DataError, match="meta device"):
        copy.deepcopy(restored).predict(x_test)
    buffer = io.BytesIO()
    torch.save(restored.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    again = copy.deepcopy(restored)
    again.load_state_dict(state)
    with pytest.raises(DataError, match="meta device"):
        again.predict(x_test)
    with_data = copy.deepcopy(model)
    with_data.load_state_dict(state)
    want, got = model.predict(x_test), with_data.predict(x_test)
    assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)


def _posterior_mean(model, x):
    """``model.gp``'s posterior mean at ``x``, as after ``model.condition()`` (no re-conditioning here)."""
    with torch.no_grad():
        return model.gp(model.gp_inputs(model.features(x))).mean


@pytest.mark.parametrize("name", ["exact", "kiss", "gp_lstm"])
def test_a_conditioned_gp_refuses_its_lost_conditioning_data(name):
    """Found by an audit: ``model.condition()`` leaves the training features in ``model.gp``, which the meta round
    trip emptied as well, and ``model.gp(...)`` predicted from them (values near 1e-310) without a word."""
    model, x, y, x_test = _models()[name]
    model.condition()
    want = _posterior_mean(model, x_test)
    restored = _through_meta(model)
    restored.eval()
    with pytest.raises(DataError, match=r"conditioning data .*meta device.*model.condition\(\) again"):
        _posterior_mean(restored, x_test)
    restored.set_train_data(x, y)
    with pytest.raises(DataError, match="conditioning data"):  # the GP is not conditioned on them yet
        _posterior_mean(restored, x_test)
    restored.condition()
    assert torch.equal(_posterior_mean(restored, x_test), want)


def test_the_lost_conditioning_data_do_not_stop_the_prior_nor_the_marginal_likelihood():
    """Guard (passes before the fix too): GPyTorch's prior mode does not read the conditioning data, and the
    marginal likelihood (eval and train mode) works once the model's data are set again, before any condition()."""
    model, x, y, x_test = _models()["exact"]
    model.condition()
    restored = _through_meta(model)
    restored.set_train_data(x, y)
    h = restored.gp_inputs(restored.features(x_test))
    restored.eval()
    with torch.no_grad(), gpytorch.settings.prior_mode(True):
        assert torch.equal(restored.gp(h).mean, model.gp.mean_module(h))
    assert torch.equal(restored.marginal_log_likelihood(), model.marginal_log_likelihood())
    restored.train()  # the training loss calls the GP's forward on the features, not the conditioned GP
    assert torch.equal(restored.marginal_log_likelihood(), model.train().marginal_log_likelihood())


def test_the_kiss_grid_and_its_caches_come_back_with_the_state_dict():
    """Guard (passes before the fix too): the KISS-GP grid, its flag and the recorded grid scaling are persistent
    buffers that ``load_state_dict`` restores bit for bit, and GPyTorch's cached grid covariance and prediction
    strategy, computed before the move, are dropped by ``load_state_dict``, not kept from the old values."""
    model, x, y, x_test = _models()["kiss"]
    model.predict(x_test)
    model.condition()
    _posterior_mean(model, x_test)  # fills the prediction strategy and the grid covariance cache
    assert model.gp.prediction_strategy is not None and hasattr(model.gp.covar_module, "_cached_kernel_mat")
    restored = _through_meta(model)
    assert restored.gp.prediction_strategy is None
    assert not hasattr(restored.gp.covar_module, "_cached_kernel_mat")
    kept = {k: v for k, v in model.named_buffers() if k not in ("train_x", "train_y")}
    assert {"gp.covar_module.grid_0", "scale_to_bounds.min_val", "scale_to_bounds.max_val"} <= set(kept)
    again = dict(restored.named_buffers())
    assert all(torch.equal(again[k], v) for k, v in kept.items())


@pytest.mark.parametrize("grid", [False, True], ids=["inducing", "grid"])
def test_sv_dkl_through_the_meta_device_predicts_as_before(grid, tmp_path):
    """Guard (passes before the fix too): an SV-DKL model keeps nothing outside its state dict (the inducing
    points, the grid, q(u) and the running grid scaling are in it; GPyTorch's memo of p(u) and its Cholesky factor
    is dropped by load_state_dict), so the meta round trip and save/load give its predictions bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(30, 3)
    kwargs = {"grid_size": 8} if grid else {"inducing_points": torch.randn(6, 2)}
    model = SVDeepKernelGP(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), num_features=2, num_data=30, **kwargs)
    with torch.no_grad():
        model(x)  # in train mode: the grid scaling records the features' range
    model.eval()
    want = model.predict(x[:5])
    restored = _through_meta(model)
    for got in (restored.predict(x[:5]), hybridpgm.load(hybridpgm.save(restored, tmp_path / "m.pt")).predict(x[:5])):
        assert torch.equal(got.mean, want.mean) and torch.equal(got.variance, want.variance)
