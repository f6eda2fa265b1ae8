"""Data checks inside torch.jit.trace (hybridpgm/train/traced_checks.py, through check_or_defer): compiled into the
traced function, so that every later input is checked, not frozen into the value they had while tracing."""

import functools
import warnings

import pytest
import torch

from hybridpgm.errors import DataError, TrainingWarning
from hybridpgm.train import traced_checks
from hybridpgm.train.deferred_checks import check_or_defer, deferring_checks
from hybridpgm.train.traced_checks import describe_check


def _nonnegative_sum(x):
    def negative():
        return DataError(f"x holds a negative value in row {int((x < 0).nonzero()[0, 0])}")

    check_or_defer((x >= 0).all(), negative)
    return x.sum()


def _trace(fn, example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's TracerWarnings and the deprecation of torch.jit.trace
        return torch.jit.trace(fn, (example,), check_trace=False)


@pytest.fixture
def fresh_warning(monkeypatch):
    """This process has not warned yet that traced checks lose their details."""
    monkeypatch.setattr(traced_checks, "_WARNED", [])


def test_a_traced_check_judges_every_later_input(fresh_warning):
    """Before, check_or_defer read its flag with bool(): torch.jit.trace froze it to True, and the compiled
    function summed [1, -5, 2] to -2 without a word."""
    compiled = _trace(_nonnegative_sum, torch.tensor([1.0, 2.0, 3.0]))
    assert compiled(torch.tensor([4.0, 0.0])).item() == 4.0
    with pytest.raises(torch.jit.Error, match=r"(?s)DataError: check 'negative' of _nonnegative_sum .*"
                                              r"cannot name the row or the value"):
        compiled(torch.tensor([1.0, -5.0, 2.0]))
    assert compiled(torch.tensor([0.5])).item() == 0.5  # the compiled function is still usable


def test_a_traced_check_carries_its_fixed_description(fresh_warning):
    def fn(x):
        check_or_defer(torch.isfinite(x).all(), lambda: DataError("never built in the trace"), "x holds NaN or inf")
        return x * 2

    compiled = _trace(fn, torch.ones(2))
    with pytest.raises(torch.jit.Error, match="DataError: x holds NaN or inf"):
        compiled(torch.tensor([1.0, float("nan")]))


def test_inside_a_step_a_traced_check_is_compiled_not_deferred(fresh_warning):
    """A flag deferred while tracing would be the traced input's; the compiled function would never add its own."""
    with deferring_checks() as pending:
        compiled = _trace(_nonnegative_sum, torch.tensor([1.0, 2.0]))
    assert not pending.flags
    with deferring_checks() as pending, pytest.raises(torch.jit.Error, match="_nonnegative_sum"):
        compiled(torch.tensor([-1.0, 2.0]))


def test_bad_input_while_tracing_raises_the_eager_error_with_its_details(fresh_warning):
    with pytest.raises(DataError, match="x holds a negative value in row 1"):
        _trace(_nonnegative_sum, torch.tensor([1.0, -2.0]))


def test_tracing_warns_once_per_process(fresh_warning):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            torch.jit.trace(_nonnegative_sum, (torch.ones(3),), check_trace=False)
    ours = [w for w in caught if issubclass(w.category, TrainingWarning)]
    assert len(ours) == 1
    assert "torch.jit.Error with the check's fixed description" in str(ours[0].message)


def test_eager_checks_neither_warn_nor_change(fresh_warning):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _nonnegative_sum(torch.tensor([1.0, 2.0])).item() == 3.0
        with pytest.raises(DataError, match="row 0"):
            _nonnegative_sum(torch.tensor([-1.0, 2.0]))
    assert not traced_checks._WARNED


def test_describe_check_names_the_check_and_its_owner():
    def not_binary():
        pass

    assert describe_check(not_binary) == ("check 'not_binary' of "
                                          "test_describe_check_names_the_check_and_its_owner")
    assert describe_check(lambda: None) == "a check of test_describe_check_names_the_check_and_its_owner"
    assert describe_check(len) == "check 'len'"
    assert describe_check(functools.partial(not_binary)) == describe_check(not_binary)
