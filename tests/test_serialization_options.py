"""Constructor options kept as attributes (hybridpgm.options.Option) and saved: ``record_argument``
(hybridpgm.serialization_registry) on a toy module; each model's own options are tested beside it, the descriptor
in tests/test_options.py."""

from __future__ import annotations

import copy
import pickle

import pytest

import hybridpgm
from hybridpgm.errors import ModelSpecError
from hybridpgm.serialization import serializable
from hybridpgm.serialization_registry import record_argument
from tests.test_options import Toy


@serializable
class FixedSteps(Toy):
    """A registered subclass whose constructor fixes ``steps`` itself (it takes no such argument)."""

    def __init__(self, width: int = 2):
        super().__init__(width, steps=5)


def _round_trip(module, tmp_path):
    return hybridpgm.load(hybridpgm.save(module, tmp_path / "m.pt"))


def test_a_recorded_option_set_later_is_checked_and_saved(tmp_path):
    toy = Toy(steps=4)
    toy.steps = 7
    assert toy.steps == 7 and _round_trip(toy, tmp_path).steps == 7
    with pytest.raises(ModelSpecError, match="Toy steps must be"):
        toy.steps = 0
    assert toy.steps == 7 and _round_trip(toy, tmp_path).steps == 7  # a refused value changes nothing
    default = Toy()  # the argument left at its default is recorded once set
    default.steps = 9
    assert _round_trip(default, tmp_path).steps == 9


def test_a_fixed_option_refuses_a_later_assignment_and_keeps_its_value():
    toy = Toy(width=3)
    with pytest.raises(AttributeError, match=r"Toy.width is fixed when the model is built.*build a new Toy"):
        toy.width = 4
    assert toy.width == 3 and toy.linear.in_features == 3


def test_record_argument_before_the_constructor_returns_and_for_a_subclass_without_the_argument(tmp_path):
    toy = Toy.__new__(Toy)
    record_argument(toy, "steps", 2)  # nothing recorded yet: a no-op
    assert "_hybridpgm_init" not in toy.__dict__
    fixed = FixedSteps(width=2)
    fixed.steps = 8  # FixedSteps(steps=8) does not exist: not recorded, so the file still loads
    loaded = _round_trip(fixed, tmp_path)
    assert type(loaded) is FixedSteps and loaded.steps == 5


def test_copies_keep_their_own_value_and_record(tmp_path):
    toy = Toy(steps=4)
    shallow, deep = copy.copy(toy), copy.deepcopy(toy)
    shallow.steps = 6
    deep.steps = 8
    assert (toy.steps, shallow.steps, deep.steps) == (4, 6, 8)
    assert _round_trip(toy, tmp_path).steps == 4
    assert _round_trip(shallow, tmp_path).steps == 6
    assert _round_trip(deep, tmp_path).steps == 8
    unpickled = pickle.loads(pickle.dumps(toy))
    unpickled.steps = 10
    assert toy.steps == 4 and _round_trip(unpickled, tmp_path).steps == 10
    with pytest.raises(AttributeError, match="fixed"):
        unpickled.width = 5
