"""A checkpoint is never resumed from a non-finite state: fit refuses it when it resumes, naming the file
and the entries (module, optimizer or other state), as save_checkpoint refuses to write one."""

import math

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data


def _fit(objective, ckpt, **kwargs):
    return fit(objective, regression_data(), batch_size=16, progress=False, seed=0, checkpoint=ckpt, **kwargs)


def _tampered(tmp_path, change):
    """A good checkpoint of LinearRegression (4 steps, Adam), changed by ``change(state)``."""
    good = tmp_path / "good.pt"
    _fit(LinearRegression(), good)
    state = torch.load(good, weights_only=True)
    change(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    return path


def _set(value, *keys):
    def change(state):
        for key in keys[:-1]:
            state = state[key]
        state[keys[-1]][0] = value
    return change


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("keys, shown", [
    (("module", "weight"), r"\['module'\]\['weight'\]"),
    (("players", "fit", "optimizer", "state", 0, "exp_avg"), r"\['players'\]\['fit'\]\['optimizer'\]\['state'\]"
                                                            r"\[0\]\['exp_avg'\]"),
])
def test_a_non_finite_checkpoint_is_refused_when_resuming(tmp_path, keys, shown, value):
    """Before, it was resumed without a check; the run then failed a few steps later saying that this
    same file 'keeps the last good state'."""
    path = _tampered(tmp_path, _set(value, *keys))
    objective = LinearRegression()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(CheckpointError, match=rf"checkpoint '.*bad.pt' holds non-finite values in {shown}; "
                                              "resuming it would train from a broken state"):
        _fit(objective, path, epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(before, objective.module.parameters()))  # nothing loaded


def test_load_checkpoint_refuses_nan_anywhere(tmp_path):
    path = _tampered(tmp_path, _set(math.nan, "players", "fit", "optimizer", "state", 1, "exp_avg_sq"))
    with pytest.raises(CheckpointError, match=r"'.*bad.pt' holds non-finite values in \['players'\]\['fit'\]"
                                              r"\['optimizer'\]\['state'\]\[1\]\['exp_avg_sq'\]"):
        load_checkpoint(path)


class WithBound(LinearRegression):
    """A module with a buffer that is infinite by design (as a GPyTorch constraint's bound)."""

    def __init__(self):
        super().__init__()
        self.module.register_buffer("upper", torch.tensor(math.inf))


def test_an_infinite_buffer_is_resumed(tmp_path):
    ckpt = tmp_path / "c.pt"
    _fit(WithBound(), ckpt)
    result = _fit(WithBound(), ckpt, epochs=2)
    assert result.steps == 8 and math.isinf(load_checkpoint(ckpt)["module"]["upper"])


def test_check_finite_checkpoint_allows_infinity_only_where_told():
    from hybridpgm.train.checkpoint import check_finite_checkpoint

    state = {"module": {"b": torch.tensor(math.inf)}, "step": 3}
    with pytest.raises(CheckpointError, match=r"'x.pt' holds non-finite values in \['module'\]\['b'\]"):
        check_finite_checkpoint("x.pt", state)
    check_finite_checkpoint("x.pt", state, infinite_ok=frozenset({"['module']['b']"}))
    check_finite_checkpoint("x.pt", state, nan_only=True)
    with pytest.raises(CheckpointError, match=r"\['module'\]\['b'\]"):
        check_finite_checkpoint("x.pt", {"module": {"b": torch.tensor(math.nan)}}, nan_only=True)
