"""The history in a checkpoint is one tensor per series (hybridpgm/train/checkpoint_history.py).

Before, a checkpoint held the history as lists of Python floats, which every write walked element by element in
Python (plain_data, nonfinite_entries, encode_nonfinite_floats, torch's pickler): with a checkpoint every k steps
a run of S steps spent O(S^2 / k) writing (audit17/scaling2, finding 1: 74 s against 12 s of training at 32k
steps)."""

import functools
import math
import struct

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train import EvaluateEvery, run_checkpoint
from hybridpgm.train import checkpoint as checkpoint_module
from hybridpgm.train.atomic_write import write_atomically
from hybridpgm.train.checkpoint import encode_nonfinite_floats, load_checkpoint
from hybridpgm.train.history import History
from tests.train.helpers import NanOnLargeRows, data_with_a_large_row




def _weight_norm(objective):
    return float(objective.module.weight.norm())


def _fit(path, max_steps, every=None):
    objective = NanOnLargeRows(1.0)
    result = fit(objective, data_with_a_large_row(), max_steps=max_steps, batch_size=4, shuffle=False, seed=0,
                 progress=False, checkpoint=path, checkpoint_every=every, skip_nonfinite=True,
                 callbacks=[EvaluateEvery(2, _weight_norm, name="norm")],
                 optim=functools.partial(torch.optim.SGD, lr=0.1))
    return objective, result


def _same_history(a: History, b: History) -> bool:
    return str(a) == str(b)  # nan == nan as text


def test_a_checkpoint_holds_each_history_series_as_one_tensor(tmp_path):
    _, result = _fit(tmp_path / "run.pt", 6)
    raw = torch.load(tmp_path / "run.pt", weights_only=True)["history"]
    n = 6

    def one(value, dtype, length):
        return isinstance(value, torch.Tensor) and value.dtype == dtype and tuple(value.shape) == (length,)

    assert raw["encoding"] == "tensors"
    assert one(raw["step"], torch.int64, n) and raw["step"].tolist() == list(range(1, n + 1))
    assert one(raw["wall_time"], torch.float64, n) and one(raw["examples_per_second"], torch.float64, n)
    assert list(raw["loss"]) == ["m"] and one(raw["loss"]["m"], torch.float64, n)
    points = len(result.history.metrics["norm"])
    assert points == 3 and one(raw["metrics"]["norm"]["step"], torch.int64, points)
    assert one(raw["metrics"]["norm"]["value"], torch.float64, points)
    # the skipped steps' NaN losses (steps 1, 3 and 5: the bad batch, once an epoch) are coded apart: the file holds
    # finite numbers only
    assert raw["nonfinite"] == {"loss": {"m": raw["nonfinite"]["loss"]["m"]}}
    assert raw["nonfinite"]["loss"]["m"].tolist() == [1, 0, 1, 0, 1, 0]
    assert bool(torch.isfinite(raw["loss"]["m"]).all())
    loaded = load_checkpoint(tmp_path / "run.pt")["history"]
    assert str(loaded) == str(result.history.state_dict())  # the lists saved, bit for bit
    assert _same_history(History.from_state_dict(raw), result.history)


def test_an_old_checkpoint_with_history_lists_resumes_as_an_uninterrupted_run(tmp_path):
    """Guard (passes on the old code too): a checkpoint of format 2, its history as lists with the skipped step's
    NaN loss tagged, written here as the old ``save_checkpoint`` wrote it, resumes exactly; its next write holds
    the history as tensors."""
    whole, reference = _fit(tmp_path / "whole.pt", 10)
    _fit(tmp_path / "old.pt", 4)
    state = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(state["history"]["step"], list) and math.isnan(state["history"]["loss"]["m"][0])
    write_atomically(tmp_path / "old.pt", encode_nonfinite_floats({**state, "format_version": 2}), "checkpoint")
    raw = torch.load(tmp_path / "old.pt", weights_only=True)["history"]
    assert raw["loss"]["m"][0] == {checkpoint_module.FLOAT_TAG: "nan"} and isinstance(raw["wall_time"], list)
    resumed, result = _fit(tmp_path / "old.pt", 10)
    assert all(torch.equal(a, b) for a, b in zip(whole.module.state_dict().values(),
                                                 resumed.module.state_dict().values()))
    assert result.steps == reference.steps == 10 and result.skipped_steps == reference.skipped_steps
    assert str(result.history.loss) == str(reference.history.loss) and result.history.step == reference.history.step
    assert result.history.metrics == reference.history.metrics
    assert result.history.wall_time[:4] == state["history"]["wall_time"]  # the old part kept as it was
    again = load_checkpoint(tmp_path / "old.pt")["history"]
    assert str(again["loss"]) == str(load_checkpoint(tmp_path / "whole.pt")["history"]["loss"])


def _walker_calls_per_write(tmp_path, monkeypatch, steps):
    """The Python calls of the checkpoint walkers (plain_data's, encode_nonfinite_floats' and nonfinite_entries'
    recursions) in each checkpoint write of a run of ``steps`` steps, checkpointed every 25 steps."""
    calls = [0]

    def counted(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            calls[0] += 1
            return function(*args, **kwargs)
        return wrapper

    for name in ("_plain", "_mapped", "nonfinite_entries"):  # each recursion calls itself through the module
        monkeypatch.setattr(checkpoint_module, name, counted(getattr(checkpoint_module, name)))
    per_write = []
    save = run_checkpoint.save_checkpoint

    def save_counted(*args, **kwargs):
        before = calls[0]
        out = save(*args, **kwargs)
        per_write.append(calls[0] - before)
        return out

    monkeypatch.setattr(run_checkpoint, "save_checkpoint", save_counted)
    _fit(tmp_path / f"run{steps}.pt", steps, every=25)
    monkeypatch.undo()
    return per_write


def test_the_work_of_a_checkpoint_write_does_not_grow_with_the_steps_run(tmp_path, monkeypatch):
    """Counted, not timed: before, each history float cost a call of each walker, so the last write of a 400-step
    run made 5775 more calls than that of a 50-step run (8798 against 3023: about 15 more a step)."""
    short = _walker_calls_per_write(tmp_path, monkeypatch, 50)
    long = _walker_calls_per_write(tmp_path, monkeypatch, 400)
    assert len(short) >= 2 and len(long) >= 16
    assert max(long) == max(short) and min(long) == min(short), (short, long)


def test_a_history_round_trips_bit_for_bit():
    from hybridpgm.train.checkpoint_history import packed_history, unpacked_history

    values = [0.1, -0.0, 5e-324, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 1 / 3]
    history = History(step=[1, 2, 2**62], loss={"a": values, "b": []}, wall_time=[0.5, math.inf, 2.0],
                      examples_per_second=[], metrics={"m": [(3, -math.inf), (7, 2.5)], "empty": []})
    packed = packed_history(history)
    assert all(bool(torch.isfinite(t).all()) for t in (packed["loss"]["a"], packed["wall_time"]))
    back = History.from_state_dict(unpacked_history(packed))
    assert [struct.pack("<d", v) for v in back.loss["a"]] == [struct.pack("<d", v) for v in values]
    assert back.step == [1, 2, 2**62] and all(type(s) is int for s in back.step)
    assert str(back) == str(history) and back.loss["b"] == [] and back.metrics["empty"] == []


def test_lists_of_numbers_are_packed_without_torch_reading_each_number(monkeypatch):
    """A series that is a list of Python numbers (of mixed kinds: int, bool, NumPy scalars) is packed through an
    ``array.array``, not by ``torch.tensor`` walking the list (three to four times slower per recorded step, the
    bulk of a long run's checkpoint write), into the tensor ``torch.tensor`` makes, bit for bit; whole floats in the
    step series are read as their integers, not by torch either."""
    import numpy as np

    from hybridpgm.train.checkpoint_history import packed_history

    floats = [0.1, -0.0, 5e-324, 1.7976931348623157e308, 1, True, np.float32(0.1), np.float64(2.5), 2**60 + 1]
    expected = torch.tensor(floats, dtype=torch.float64)
    history = History(step=[1, np.int64(2), True, 2**62], loss={"a": floats}, wall_time=[0.5, 2.0],
                      examples_per_second=[3.0, 4.0])
    real, read = torch.tensor, []

    def tensor(data, *args, **kwargs):
        if isinstance(data, list) and data:
            read.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", tensor)
    packed = packed_history(history)
    assert read == []
    assert [struct.pack("<d", v) for v in packed["loss"]["a"].tolist()] == \
        [struct.pack("<d", v) for v in expected.tolist()]
    assert packed["step"].dtype == torch.int64 and packed["step"].tolist() == [1, 2, 1, 2**62]
    packed = packed_history(History(step=[1.0, 2.0], loss={"a": [0.5, 0.25]}, wall_time=[0.1, 0.2],
                                    examples_per_second=[1.0, 1.0]))
    assert read == [] and packed["step"].tolist() == [1, 2]  # whole float steps: read as ints, not by torch


def test_a_history_holding_other_than_numbers_is_refused_naming_the_series(tmp_path):
    from hybridpgm.train.checkpoint_history import packed_history

    history = History(step=[1], loss={"a": ["high"]}, wall_time=[0.1], examples_per_second=[1.0])
    with pytest.raises(CheckpointError, match=r"history\['loss'\]\['a'\] cannot be stored in checkpoint '.*c.pt'"):
        packed_history(history, tmp_path / "c.pt")
    history = History(step=[1], metrics={"m": [(1, 2.0, 3.0)]})
    with pytest.raises(CheckpointError, match=r"history\['metrics'\]\['m'\] .* \(step, value\) pairs"):
        packed_history(history)


@pytest.mark.parametrize("damage, message", [
    (lambda h: h["loss"].__setitem__("a", h["loss"]["a"].float()),
     r"history entry\['loss'\]\['a'\] is a float32 tensor of shape \(2,\), not a 1-d float64 tensor"),
    (lambda h: h.pop("wall_time"), r"history entry\['wall_time'\] is missing"),
    (lambda h: h["nonfinite"]["loss"].__setitem__("a", torch.tensor([1, 0, 0], dtype=torch.int8)),
     r"history entry\['nonfinite'\]\['loss'\]\['a'\] is .* of another length than its series \(2\)"),
    (lambda h: h["metrics"]["m"].__setitem__("step", torch.tensor([1, 2])),
     r"history entry\['metrics'\]\['m'\] holds 2 steps and 1 values"),
])
def test_a_damaged_history_of_tensors_is_refused_naming_the_file_and_entry(tmp_path, damage, message):
    from hybridpgm.train.checkpoint_history import packed_history

    history = History(step=[1, 2], loss={"a": [math.nan, 1.0]}, wall_time=[0.1, 0.2], examples_per_second=[1.0, 1.0],
                      metrics={"m": [(2, 0.5)]})
    packed = packed_history(history)
    damage(packed)
    write_atomically(tmp_path / "c.pt", {"format_version": 3, "step": 2, "history": packed}, "checkpoint")
    with pytest.raises(CheckpointError, match=r"checkpoint '.*c.pt': the " + message):
        load_checkpoint(tmp_path / "c.pt")


def test_a_step_that_is_not_whole_is_refused_not_cut(tmp_path):
    """The step series is stored as int64: whole floats (``2.0``) are read as their integers, as before, but a
    fraction, an infinity or NaN was cut to an integer silently (``2.5`` stored as ``2``); now it is refused
    naming the series and the value."""
    from hybridpgm.train.checkpoint_history import packed_history

    def history(steps):
        return History(step=steps, loss={"a": [0.5] * len(steps)}, wall_time=[0.1] * len(steps),
                       examples_per_second=[1.0] * len(steps))

    assert packed_history(history([1.0, 2.0, True])).get("step").tolist() == [1, 2, 1]
    for bad in (2.5, math.inf, math.nan):
        with pytest.raises(CheckpointError, match=rf"history\['step'\] cannot be stored .* {bad!r}, which is no whole"):
            packed_history(history([1.0, bad]), tmp_path / "c.pt")


def test_whole_float_steps_are_read_exactly_beyond_float32():
    """A whole float step past float32's 2**24 (``16777217.0``) is stored as that integer (a first version read
    the float list through float32 and stored 16777216), and a fraction there (``16777216.5``) is refused."""
    from hybridpgm.train.checkpoint_history import packed_history

    steps = [16777217.0, 100000001.0, 2.0**62]
    history = History(step=steps, loss={"a": [0.5] * 3}, wall_time=[0.1] * 3, examples_per_second=[1.0] * 3)
    assert packed_history(history)["step"].tolist() == [16777217, 100000001, 2**62]
    history = History(step=[16777216.5], loss={"a": [0.5]}, wall_time=[0.1], examples_per_second=[1.0])
    with pytest.raises(CheckpointError, match=r"16777216\.5, which is no whole step number"):
        packed_history(history)
