"""hybridpgm.save stores NumPy scalars and subclasses of the builtin scalars (in meta, constructor arguments or
a module's extra state) as builtins that loading with ``weights_only=True`` reads back, and refuses the rest by
name."""

import enum
from pathlib import Path

import numpy as np
import pytest
import torch

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization import load_model, serializable


class Level(enum.IntEnum):
    LOW = 1


def test_numpy_constructor_argument_saves_and_loads(tmp_path):
    model = RBM(4, 3, visible="gaussian", sigma=np.std([0.0, 2.0]))  # np.float64
    path = hybridpgm.save(model, tmp_path / "m.pt")  # old code: written, then refused by load
    loaded = hybridpgm.load(path)
    assert type(loaded) is RBM and torch.equal(loaded.state_dict()["weight"], model.state_dict()["weight"])
    assert torch.load(path, weights_only=True)["model"]["spec"]["sigma"] == 1.0


def test_subclass_meta_values_load_as_builtins(tmp_path):
    path = hybridpgm.save(RBM(4, 3), tmp_path / "m.pt", name=np.str_("digits"), level=Level.LOW,
                          scale=np.float64(0.5), n=np.int64(3))
    meta = load_model(path).meta
    assert meta == {"name": "digits", "level": 1, "scale": 0.5, "n": 3}
    assert [type(meta[k]) for k in ("name", "level", "scale", "n")] == [str, int, float, int]


def test_other_meta_values_are_refused_by_name(tmp_path):
    with pytest.raises(CheckpointError, match=r"meta\['where'\]: a pathlib.PosixPath is not plain data"):
        hybridpgm.save(RBM(4, 3), tmp_path / "m.pt", where=Path("x"))
    assert not (tmp_path / "m.pt").exists()


class PathExtra(torch.nn.Linear):
    def get_extra_state(self):
        return {"source": Path("data.csv")}

    def set_extra_state(self, state):
        pass


def test_unreadable_extra_state_is_refused_by_name(tmp_path):
    cls = serializable(type("PathExtraModel", (PathExtra,), {"__module__": __name__}))
    with pytest.raises(CheckpointError, match=r"state_dict\['_extra_state'\]\['source'\] \(a pathlib"):
        hybridpgm.save(cls(2, 1), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
