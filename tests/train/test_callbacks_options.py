"""EvaluateEvery's ``every`` assigned after construction: checked as the constructor checks it.

``evaluator.every = 0`` used to be accepted, and ``fit`` then stopped at its first step with a raw
``ZeroDivisionError`` (``step % every``)."""

import base64
import copy
import pickle

import pytest

from hybridpgm import fit
from hybridpgm.errors import ConfigError
from hybridpgm.train import EvaluateEvery
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
