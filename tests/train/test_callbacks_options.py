"""The callbacks' options assigned after construction: checked as the constructor checks them.

``evaluator.every = 0`` used to be accepted, and ``fit`` then stopped at its first step with a raw
``ZeroDivisionError`` (``step % every``).  EarlyStopping's ``monitor``, ``patience``, ``mode`` and ``min_delta`` were
plain attributes too; ``monitor`` and ``mode`` change only while nothing has been observed."""

import base64
import copy
import math
import pickle

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import ConfigError
from hybridpgm.train import EarlyStopping, EvaluateEvery
from hybridpgm.train.history import History
from tests.train.helpers import LinearRegression, regression_data
from tests.option_contract import assert_refused_as_by_the_constructor

#: ``pickle.dumps(EvaluateEvery(3, abs, "m"), protocol=4)`` made by the release before ``every`` was a checked
#: attribute (HEAD 82e8bc4)
OLD_PICKLE = ("gASVdgAAAAAAAACMGWh5YnJpZHBnbS50cmFpbi5jYWxsYmFja3OUjA1FdmFsdWF0ZUV2ZXJ5lJOUKYGUfZQojAVldmVyeZRL"
              "A4wCZm6UjAhidWlsdGluc5SMA2Fic5STlIwEbmFtZZSMAW2UjApfbGFzdF9zdGVwlEr/////dWIu")


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_every_assigned_later_is_refused_as_by_the_constructor(value):
    evaluator = EvaluateEvery(2, abs)
    assert_refused_as_by_the_constructor(lambda: EvaluateEvery(value, abs), evaluator, "every", value)
    assert evaluator.every == 2


def test_every_zero_no_longer_stops_fit_with_a_raw_error():
    evaluator = EvaluateEvery(1, lambda objective: 0.5, name="m")
    with pytest.raises(ConfigError, match="EvaluateEvery every must be a positive integer, got 0"):
        evaluator.every = 0
    result = fit(LinearRegression(), regression_data(), epochs=1, batch_size=16, callbacks=[evaluator],
                 progress=False)
    assert [step for step, _ in result.history.metrics["m"]] == [1, 2, 3, 4]


def test_a_callback_pickled_by_the_earlier_release_loads_and_checks_later_assignments():
    evaluator = pickle.loads(base64.b64decode(OLD_PICKLE))
    assert (evaluator.every, evaluator.name, evaluator.settings()) == (3, "m", {"every": 3})
    evaluator.every = 5
    assert copy.deepcopy(evaluator).every == 5 and pickle.loads(pickle.dumps(evaluator)).every == 5
    with pytest.raises(ConfigError, match="EvaluateEvery every"):
        evaluator.every = 0


# --- EarlyStopping's options --------------------------------------------------------------------------------------

#: ``pickle.dumps(EarlyStopping("val", patience=3, mode="max", min_delta=0.5), protocol=4)`` made by the release
#: before its options were checked attributes (HEAD a2f2127)
OLD_EARLY_STOPPING = ("gASVrAAAAAAAAACMGWh5YnJpZHBnbS50cmFpbi5jYWxsYmFja3OUjA1FYXJseVN0b3BwaW5nlJOUKYGUfZQojAdtb25pdG9y"
                      "lIwDdmFslIwIcGF0aWVuY2WUSwOMBG1vZGWUjANtYXiUjAltaW5fZGVsdGGURz/gAAAAAAAAjARiZXN0lEf/8AAAAAAAAIwK"
                      "YmFkX3JvdW5kc5RLAIwFX3NlZW6USwCMCV9kZWFkbGluZZROdWIu")


def _watch(stopping, values):
    """Feed ``values`` to ``stopping`` as the losses of the player ``"loss"``, one step each; the steps whose
    ``info`` asked for a stop."""
    from hybridpgm.train.callbacks import StepInfo

    history = History()
    history.loss["loss"] = []
    stops = []
    for step, value in enumerate(values, 1):
        history.loss["loss"].append(value)
        info = StepInfo(step, 0, {"loss": value}, None, history, torch.device("cpu"))
        stopping.on_step_end(info)
        if info.stop_requested:
            stops.append(step)
    return stops


@pytest.mark.parametrize("option, value", [("monitor", ""), ("monitor", None), ("monitor", 3), ("patience", 0),
                                           ("patience", 2.5), ("patience", True), ("mode", "avg"), ("mode", None),
                                           ("min_delta", -1.0), ("min_delta", float("nan")), ("min_delta", "0")])
def test_early_stopping_options_assigned_later_are_refused_as_by_the_constructor(option, value):
    """The audit: every one was a plain attribute (``patience = 0``, ``mode = "avg"``, ``min_delta = -1`` were
    accepted and changed when the run stopped)."""
    stopping = EarlyStopping("loss", patience=2)
    arguments = {"monitor": "loss", "patience": 2, option: value}
    assert_refused_as_by_the_constructor(lambda: EarlyStopping(**arguments), stopping, option, value)
    assert (stopping.monitor, stopping.patience, stopping.mode, stopping.min_delta) == ("loss", 2, "min", 0.0)


def test_mode_assigned_before_any_observation_restarts_the_best_value():
    """The audit: ``mode = "max"`` left ``best`` at min's +inf, so no value ever improved on it and rising values
    stopped the run after ``patience`` rounds."""
    stopping = EarlyStopping("loss", patience=2)
    stopping.mode = "max"
    assert stopping.best == -math.inf
    assert _watch(stopping, [1.0, 2.0, 3.0]) == [] and stopping.best == 3.0


@pytest.mark.parametrize("option, value", [("mode", "max"), ("monitor", "val")])
def test_another_monitor_or_mode_restarts_the_watch(option, value):
    """The audit: the best value of one direction (or metric) was then compared in the other.  A review found the
    first fix (a refusal once a value was observed) refusing an object reused for a second, fresh run, whose start
    resets the watch anyway: another value restarts it now, as that start does.  The same value keeps it, and
    ``patience`` and ``min_delta`` apply to the count so far."""
    stopping = EarlyStopping("loss", patience=3)
    assert _watch(stopping, [3.0, 4.0]) == [] and (stopping.best, stopping.bad_rounds) == (3.0, 1)
    stopping.mode, stopping.monitor = "min", "loss"  # the values it holds: the watch goes on
    assert (stopping.best, stopping.bad_rounds) == (3.0, 1)
    setattr(stopping, option, value)
    assert stopping.best == (-math.inf if stopping.mode == "max" else math.inf) and stopping.bad_rounds == 0
    stopping.patience = 2
    assert getattr(stopping, option) == value


def test_an_early_stopping_reused_for_a_fresh_run_may_watch_in_the_other_mode():
    """Found by a review: after a run, ``mode = "max"`` raised ``FixedOptionError`` although the next fresh run
    resets the watch at its start."""
    stopping = EarlyStopping("fit", patience=50)
    fit(LinearRegression(), regression_data(), epochs=1, batch_size=16, callbacks=[stopping], progress=False)
    assert math.isfinite(stopping.best)
    stopping.mode = "max"
    assert (stopping.mode, stopping.best) == ("max", -math.inf)
    fit(LinearRegression(), regression_data(), epochs=1, batch_size=16, callbacks=[stopping], progress=False)
    assert math.isfinite(stopping.best) and stopping.mode == "max"


def test_an_early_stopping_pickled_by_the_earlier_release_loads_and_checks_later_assignments():
    stopping = pickle.loads(base64.b64decode(OLD_EARLY_STOPPING))
    assert stopping.settings() == {"monitor": "val", "mode": "max", "min_delta": 0.5, "patience": 3}
    stopping.patience = 4
    assert copy.deepcopy(stopping).patience == 4 and pickle.loads(pickle.dumps(stopping)).patience == 4
    with pytest.raises(ConfigError, match="EarlyStopping patience"):
        stopping.patience = 0
    stopping.mode = "min"  # nothing observed yet
    assert stopping.best == math.inf
