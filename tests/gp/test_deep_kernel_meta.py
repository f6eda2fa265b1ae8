"""DeepKernelGP / GPLSTM on torch's meta device: ``model.to("meta")``, then ``to_empty`` and ``load_state_dict``.

The training data are non-persistent buffers (not in the state dict): after the meta round trip they have
storage but no values, so the model refuses them by name until ``set_train_data`` gives them back (it used to
condition on whatever memory ``to_empty`` handed out and predict garbage without a word).
"""

import copy

import pytest
import torch
from torch import nn

from hybridpgm.errors import DataError
from hybridpgm.gp import GPLSTM, DeepKernelGP, SemiStochasticObjective

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


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
