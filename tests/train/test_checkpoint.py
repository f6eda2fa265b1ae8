import random

import numpy as np
import pytest
import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    state = {"module": {"w": torch.arange(3.0)}, "step": 4, "rng": rng_state(), "history": {"loss": [1.0]}}
    save_checkpoint(path, state)
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 4 and torch.equal(loaded["module"]["w"], torch.arange(3.0))
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_rng_state_restores_every_generator():
    state = rng_state()
    draws = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_unreadable_checkpoints_name_the_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"format_version": 1, "obj": ValueError("arbitrary object")}, path)  # not weights-only loadable
    with pytest.raises(CheckpointError, match="foreign.pt"):
        load_checkpoint(path)
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a hybridpgm checkpoint"):
        load_checkpoint(path)
