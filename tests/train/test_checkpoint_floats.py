"""Checkpoints hold no non-finite Python float (hybridpgm/train/checkpoint.py): a scheduler's infinite ``best``
and a skipped step's NaN loss are written in tagged form and decoded when the checkpoint is read, so that a raw
``torch.load(weights_only=True)`` finds finite numbers only and a resume is still exact."""

import collections
import functools
import math

import pytest
import torch

from hybridpgm import fit
from hybridpgm.train.checkpoint import (FLOAT_TAG, decode_nonfinite_floats, encode_nonfinite_floats,
                                        load_checkpoint, save_checkpoint)
from tests.train.helpers import NanOnLargeRows, data_with_a_large_row


def _nonfinite_floats(state, path=""):
    """Paths of the non-finite Python floats in ``state`` (tensors are not walked)."""
    if isinstance(state, float):
        return [] if math.isfinite(state) else [path]
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return [bad for key, value in items for bad in _nonfinite_floats(value, f"{path}[{key!r}]")]




def _fit(path, max_steps):
    objective = NanOnLargeRows()
    result = fit(objective, data_with_a_large_row(), max_steps=max_steps, batch_size=4, shuffle=False, seed=0,
                 progress=False, checkpoint=path, skip_nonfinite=True, optim=functools.partial(torch.optim.SGD, lr=0.1),
                 lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau)
    return objective, result


def test_a_checkpoint_holds_no_non_finite_float_and_resumes_exactly(tmp_path):
    """Before, the raw file held inf (ReduceLROnPlateau's best and mode_worse) and NaN (the skipped loss)."""
    _fit(tmp_path / "one.pt", 1)
    raw = torch.load(tmp_path / "one.pt", weights_only=True)
    assert _nonfinite_floats(raw) == []
    assert raw["players"]["m"]["scheduler"]["mode_worse"] == {FLOAT_TAG: "inf"}
    # the history is one tensor per series, the NaN loss coded apart (hybridpgm/train/checkpoint_history.py)
    assert torch.equal(raw["history"]["loss"]["m"], torch.tensor([0.0], dtype=torch.float64))
    assert torch.equal(raw["history"]["nonfinite"]["loss"]["m"], torch.tensor([1], dtype=torch.int8))
    loaded = load_checkpoint(tmp_path / "one.pt")
    assert loaded["players"]["m"]["scheduler"]["best"] == math.inf and math.isnan(loaded["history"]["loss"]["m"][0])
    whole, reference = _fit(tmp_path / "whole.pt", 4)
    resumed, result = _fit(tmp_path / "one.pt", 4)
    assert result.skipped_steps == reference.skipped_steps == {"m": 2}  # the bad batch, once an epoch
    assert all(torch.equal(a, b) for a, b in zip(whole.module.state_dict().values(),
                                                 resumed.module.state_dict().values()))
    assert str(result.history.loss) == str(reference.history.loss)  # nan == nan as text
    a, b = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(tmp_path / "one.pt")
    assert a["players"]["m"]["scheduler"] == b["players"]["m"]["scheduler"]
    assert _nonfinite_floats(torch.load(tmp_path / "whole.pt", weights_only=True)) == []


def test_the_encoding_round_trips_and_keeps_containers():
    Point = collections.namedtuple("Point", "x y")
    module_state = collections.OrderedDict(w=torch.tensor([math.inf]))
    module_state._metadata = {"": {"version": 1}}
    state = {"a": [1.0, -math.inf, (math.nan, 2)], "p": Point(math.inf, 1), "module": module_state,
             "ordered": collections.OrderedDict(b=math.inf), "s": "inf", "n": None}
    encoded = encode_nonfinite_floats(state)
    assert _nonfinite_floats(encoded) == [] and state["a"][1] == -math.inf  # the input is not changed
    assert encoded["module"] is module_state  # nothing to encode: the same object, its _metadata kept
    assert encoded["a"] == [1.0, {FLOAT_TAG: "-inf"}, ({FLOAT_TAG: "nan"}, 2)] and encoded["s"] == "inf"
    decoded = decode_nonfinite_floats(encoded)
    assert decoded["a"][1] == -math.inf and math.isnan(decoded["a"][2][0]) and isinstance(decoded["a"][2], tuple)
    assert decoded["p"] == Point(math.inf, 1) and isinstance(decoded["p"], Point)
    assert type(decoded["ordered"]) is collections.OrderedDict and decoded["ordered"]["b"] == math.inf
    assert {k: v for k, v in decoded.items() if k not in ("a", "p")} == {k: v for k, v in state.items()
                                                                         if k not in ("a", "p")}


def test_save_checkpoint_writes_the_tagged_form(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"best": math.inf, "step": 1})
    assert torch.load(tmp_path / "c.pt", weights_only=True)["best"] == {FLOAT_TAG: "inf"}
    assert load_checkpoint(tmp_path / "c.pt")["best"] == math.inf


def test_the_tagged_form_is_read_in_formats_2_to_4_and_format_1_is_still_read(tmp_path):
    """A reader of format 1 would take the tagged floats for dicts (an older hybridpgm crashed inside
    ReduceLROnPlateau on ``best``): the tagged checkpoints are format 2, 3 since the history is held as tensors
    (which a reader of format 2 would take for lists), and 4 since Python's RNG state is a tensor; files of format
    1, with raw non-finite floats, and of format 2 still load (``tests/test_golden_files.py`` resumes one), and an
    unknown format is refused."""
    from hybridpgm.errors import CheckpointError
    from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "new.pt", {"best": math.inf})
    assert torch.load(tmp_path / "new.pt", weights_only=True)["format_version"] == 4
    torch.save({"format_version": 1, "best": math.inf}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["best"] == math.inf
    torch.save({"format_version": 2, "best": {FLOAT_TAG: "-inf"}}, tmp_path / "two.pt")
    assert load_checkpoint(tmp_path / "two.pt")["best"] == -math.inf
    torch.save({"format_version": 5, "best": 0.0}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="not a hybridpgm checkpoint of format 1, 2, 3 or 4"):
        load_checkpoint(tmp_path / "future.pt")
