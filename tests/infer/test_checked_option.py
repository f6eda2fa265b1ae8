"""CheckedOption: an option checked when assigned as its constructor checks it (hybridpgm/infer/checked_option.py)."""

import copy
import pickle

import pytest
from torch import nn

from hybridpgm.checks import positive_int
from hybridpgm.errors import ConfigError
from hybridpgm.infer.checked_option import CheckedOption


class Engine:
    steps = CheckedOption(lambda self, value: positive_int(value, "Engine steps"))
    low = CheckedOption(lambda self, value: _below(value, self.high, "low"))
    high = CheckedOption(lambda self, value: _below(self.low, value, "high"))
    size = CheckedOption(lambda self, value: positive_int(value, "Engine size"),
                         frozen=lambda self: f"Engine size is fixed at {self.size}")

    def __init__(self, steps=3, size=2):
        self.steps, self.size = steps, size
        vars(self).update(low=0, high=10)  # a joint pair: set together


def _below(low, high, which):
    if not low < high:
        raise ConfigError(f"Engine needs low < high, got low={low}, high={high} (setting {which})")
    return low if which == "low" else high


class Module(nn.Module):
    k = CheckedOption(lambda self, value: positive_int(value, "Module k"))

    def __init__(self, k=1):
        super().__init__()
        self.k = k
        self.linear = nn.Linear(2, 1)


def test_assignment_runs_the_check_and_keeps_the_old_value_on_refusal():
    engine = Engine()
    with pytest.raises(ConfigError, match=r"Engine steps must be a positive integer, got 0"):
        engine.steps = 0
    assert engine.steps == 3
    engine.steps = 7
    assert engine.steps == 7 and vars(engine)["steps"] == 7  # held under its own name, where a plain attribute was


def test_the_constructor_runs_the_same_check():
    with pytest.raises(ConfigError, match=r"Engine steps must be a positive integer, got 2.5"):
        Engine(steps=2.5)


def test_a_joint_rule_is_checked_whichever_option_is_set():
    engine = Engine()
    with pytest.raises(ConfigError, match="setting low"):
        engine.low = 10
    with pytest.raises(ConfigError, match="setting high"):
        engine.high = 0
    engine.high = 5
    engine.low = 4
    assert (engine.low, engine.high) == (4, 5)


def test_a_frozen_option_is_set_once():
    engine = Engine(size=4)
    with pytest.raises(ConfigError, match="Engine size is fixed at 4"):
        engine.size = 5
    assert engine.size == 4
    with pytest.raises(ConfigError, match="Engine size must be a positive integer"):
        Engine(size=0)


def test_unset_and_deleted_options():
    engine = Engine.__new__(Engine)
    with pytest.raises(AttributeError, match="steps"):
        engine.steps  # noqa: B018
    assert not hasattr(engine, "steps")
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del Engine().steps


def test_the_class_attribute_is_the_descriptor_with_a_docstring():
    assert isinstance(Engine.steps, CheckedOption)
    assert "steps" in Engine.steps.__doc__ and "checks it" in Engine.steps.__doc__
    assert "fixed at construction" in Engine.size.__doc__


def test_pickle_and_copy_keep_the_values_and_the_checks():
    engine = Engine(steps=5)
    for other in (pickle.loads(pickle.dumps(engine)), copy.copy(engine), copy.deepcopy(engine)):
        assert (other.steps, other.size, other.low, other.high) == (5, 2, 0, 10)
        with pytest.raises(ConfigError):
            other.steps = 0
        with pytest.raises(ConfigError):
            other.size = 3


def test_an_instance_pickled_with_plain_attributes_loads():
    """An earlier release's pickle holds the options as plain ``__dict__`` entries: the same place."""
    engine = Engine.__new__(Engine)
    engine.__dict__.update({"steps": 9, "size": 2, "low": 1, "high": 3})
    assert (engine.steps, engine.low, engine.high) == (9, 1, 3)
    with pytest.raises(ConfigError):
        engine.steps = -1


def test_an_nn_module_option():
    module = Module(k=2)
    with pytest.raises(ConfigError, match="Module k must be a positive integer, got 0"):
        module.k = 0
    module.k = 3
    assert module.k == 3 and "k" not in dict(module.named_parameters())
    assert copy.deepcopy(module).k == 3 and pickle.loads(pickle.dumps(module)).k == 3
    with pytest.raises(AttributeError, match="has no attribute 'k'"):
        Module.__new__(Module).k  # noqa: B018 -- read before the constructor set it
