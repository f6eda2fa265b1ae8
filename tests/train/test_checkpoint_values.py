"""Checkpoints hold only what ``torch.load(weights_only=True)`` reads back: NumPy scalars and subclasses of the
builtin scalars are stored as the builtins, anything else is refused at the first write, naming its place."""

import enum
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import hybridpgm
from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization import serializable
from hybridpgm.train.callbacks import Callback
from hybridpgm.train.checkpoint import NOT_PLAIN, load_checkpoint, plain_data, plain_scalar, save_checkpoint
from hybridpgm.train.resume import _model_differences
from tests.train.helpers import LinearRegression, regression_data


class Level(enum.IntEnum):
    LOW = 1


class Name(str, enum.Enum):
    A = "a"


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize("value, expected", [
    (np.float64(0.25), 0.25), (np.int64(3), 3), (np.bool_(True), True), (np.str_("x"), "x"),
    (np.array(1.5), 1.5), (Level.LOW, 1), (Name.A, "a"), (np.float32(0.5), 0.5),
])
def test_plain_scalar_gives_the_builtin(value, expected):
    out = plain_scalar(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value", [Path("a"), Color.RED, np.zeros(2), object(), np.datetime64("2020-01-01")])
def test_plain_scalar_refuses_other_values(value):
    assert plain_scalar(value) is NOT_PLAIN


def test_plain_data_converts_and_names_what_it_refuses():
    tensor = torch.ones(2)
    state = {"lr": np.float64(0.1), "t": tensor, "nested": [{"k": Level.LOW}], "keep": {"a": 1}}
    out, refused = plain_data(state, "players")
    assert refused == [] and type(out["lr"]) is float and type(out["nested"][0]["k"]) is int
    assert out["t"] is tensor and out["keep"] is state["keep"]  # unchanged parts are the same objects
    assert state["lr"].__class__ is np.float64  # the input is not changed
    _, refused = plain_data({"x": [Path("p")], "y": np.zeros(3)}, "callbacks")
    assert refused == ["callbacks['x'][0] (a pathlib.PosixPath)", "callbacks['y'] (a numpy.ndarray)"]


def test_numpy_values_load_back_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1, "players": {"p": {"lr": np.float64(0.1)}},
                                               "objective": {"n": np.int64(4), "s": np.str_("x")}})
    loaded = torch.load(path, weights_only=True)  # the old code wrote numpy globals that this refuses
    assert loaded["players"]["p"]["lr"] == 0.1 and loaded["objective"] == {"n": 4, "s": "x"}
    assert load_checkpoint(path)["step"] == 1


def _run(path, steps, **kw):
    x, y = regression_data()
    objective = LinearRegression()
    return fit(objective, (x, y), batch_size=16, max_steps=steps, seed=0, progress=False, checkpoint=path, **kw)


def test_numpy_learning_rate_checkpoint_resumes(tmp_path):
    path = tmp_path / "run.pt"
    optim = functools.partial(torch.optim.SGD, lr=np.float64(0.1))
    _run(path, 2, optim=optim)
    result = _run(path, 4, optim=optim, resume="require")  # old code: CheckpointError "not written by hybridpgm"
    assert result.steps == 4
    assert load_checkpoint(path)["step"] == 4


def test_numpy_scheduler_values_checkpoint_resumes(tmp_path):
    path = tmp_path / "run.pt"
    kw = dict(optim=functools.partial(torch.optim.SGD, lr=0.1),
              lr_scheduler=functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda s: np.exp(-0.1 * s)))
    _run(path, 2, **kw)
    assert _run(path, 3, resume="require", **kw).steps == 3


class PathState(Callback):
    def state_dict(self):
        return {"x": Path("somewhere")}

    def load_state_dict(self, state):
        pass


def test_path_in_callback_state_is_refused_at_the_first_write(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(CheckpointError, match=r"run\.pt.*callbacks\[0\]\['state'\]\['x'\] \(a pathlib\.PosixPath\)"):
        _run(path, 2, callbacks=[PathState()])
    assert not path.exists()  # the old code wrote a checkpoint that its resume could not read


@serializable
class CountingLinear(torch.nn.Linear):
    """A module with non-tensor extra state (torch's get_extra_state)."""

    def __init__(self, d_in: int = 5, d_out: int = 1):
        super().__init__(d_in, d_out)
        self.updates = 0

    def get_extra_state(self):
        return {"updates": self.updates}

    def set_extra_state(self, state):
        self.updates = state["updates"]


def test_plain_extra_state_checkpoint_resumes(tmp_path):
    path = tmp_path / "run.pt"
    x, y = regression_data()
    first = LinearRegression()
    first.module = CountingLinear()
    first.module.updates = 7
    fit(first, (x, y), batch_size=16, max_steps=2, seed=0, progress=False, checkpoint=path)
    second = LinearRegression()
    second.module = CountingLinear()
    # old code: AttributeError 'dict' object has no attribute 'shape' in resume._model_differences
    fit(second, (x, y), batch_size=16, max_steps=3, seed=0, progress=False, checkpoint=path, resume="require")
    assert second.module.updates == 7


def test_model_differences_compare_plain_entries_by_kind():
    saved = {"w": torch.zeros(2), "_extra_state": {"updates": 7}}
    assert _model_differences(saved, {"w": torch.zeros(2), "_extra_state": {"updates": 0}}) == []
    assert _model_differences(saved, {"w": torch.zeros(3), "_extra_state": {}}) == [
        "'w' has shape (2,) in the checkpoint, (3,) in the model"]
    assert _model_differences(saved, {"w": torch.zeros(2), "_extra_state": torch.zeros(1)}) == [
        "'_extra_state' is a dict in the checkpoint, a Tensor in the model"]


def test_plain_extra_state_saves_and_loads(tmp_path):
    module = CountingLinear()
    module.updates = 7
    hybridpgm.save(module, tmp_path / "m.pt")  # old code: AttributeError 'dict' object has no attribute 'detach'
    assert hybridpgm.load(tmp_path / "m.pt").updates == 7


def test_a_counter_keeps_its_counts():
    """The review of the first version found ``Counter.update(pairs)`` counting the (key, value) pairs themselves:
    label counts resumed as ``{(0, 2): 1, ...}``."""
    import collections

    from hybridpgm.train.checkpoint import plain_data

    out, refused = plain_data(collections.Counter(np.array([0, 1, 1, 2, 2, 2])))
    assert refused == [] and type(out) is collections.Counter and out == {0: 1, 1: 2, 2: 3}
    assert all(type(k) is int for k in out)
