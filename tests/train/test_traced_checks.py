"""Data checks inside torch.jit.trace (hybridpgm/train/traced_checks.py, through check_or_defer): compiled into the
traced function, so that every later input is checked, not frozen into the value they had while tracing."""

import ast
import contextvars
import functools
import pathlib
import warnings

import pyro
import pytest
import torch

from hybridpgm.errors import ConfigError, DataError, DataNotFoundError, EvidenceError, ModelSpecError, TrainingWarning
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


def _compiled_check(**options):
    """A traced function whose check (of ``x >= 0``) is made with ``options`` of check_or_defer."""
    def fn(x):
        check_or_defer((x >= 0).all(), lambda: options.get("kind", DataError)("eager"), "x is negative", **options)
        return x * 2

    return _trace(fn, torch.ones(2))


@pytest.mark.parametrize("kind", [EvidenceError, ModelSpecError, ConfigError, DataError])
def test_a_traced_check_names_the_class_of_the_eager_error(fresh_warning, kind):
    """Before, every compiled check ended with ``hybridpgm.errors.DataError``, an out-of-range evidence value
    (EvidenceError) or a NaN potential (ModelSpecError) included."""
    with pytest.raises(torch.jit.Error, match=rf"\nhybridpgm\.errors\.{kind.__name__}: x is negative \["):
        _compiled_check(kind=kind)(torch.tensor([1.0, -1.0]))


def test_a_subclass_is_named_as_its_base_and_a_foreign_class_is_refused(fresh_warning):
    with pytest.raises(torch.jit.Error, match=r"hybridpgm\.errors\.DataError: x is negative"):
        _compiled_check(kind=DataNotFoundError)(torch.tensor([-1.0]))
    with pytest.raises(ConfigError, match="got kind=<class 'ValueError'>"):
        _compiled_check(kind=ValueError)


def test_a_check_of_the_model_does_not_blame_the_batch(fresh_warning):
    """A check of the model's parameters (a NaN potential) told the user to evaluate the batch eagerly."""
    with pytest.raises(torch.jit.Error) as model:
        _compiled_check(about_data=False)(torch.tensor([-1.0]))
    assert f"x is negative [{traced_checks.MODEL_NOTE}]" in str(model.value)
    assert "evaluate this batch" not in str(model.value)
    with pytest.raises(torch.jit.Error) as data:
        _compiled_check()(torch.tensor([-1.0]))
    assert f"x is negative [{traced_checks.DATA_NOTE}]" in str(data.value)
    with pytest.raises(torch.jit.Error, match=r"x is negative \[own note\]"):
        _compiled_check(note="own note")(torch.tensor([-1.0]))


def _check_calls():
    """``(file, line, call)`` of every call of check_or_defer in the package."""
    root = pathlib.Path(traced_checks.__file__).parents[1]
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_or_defer"):
                yield path.relative_to(root.parent), node.lineno, node


def test_every_check_of_the_package_gives_its_fixed_description():
    """Without one a compiled check named its error builder ("check 'error' of assignment_states", "a check of
    BayesNetMasks._mask_column"), not the problem."""
    calls = list(_check_calls())
    assert len(calls) > 15
    bare = [f"{path}:{line}" for path, line, call in calls
            if len(call.args) < 3 and not any(k.arg == "what" for k in call.keywords)]
    assert bare == []


def _validation_seen_while_tracing(eager_flag, traced_flag):
    """validation_as_called() inside torch.jit.trace under ``traced_flag``, after one eager call under
    ``eager_flag`` (None: none), in a fresh context."""
    seen = []

    def fn(x):
        seen.append(traced_checks.validation_as_called())
        return x + 1

    def run():
        if eager_flag is not None:
            with pyro.validation_enabled(eager_flag):
                assert traced_checks.validation_as_called() is eager_flag
        with pyro.validation_enabled(traced_flag):
            _trace(fn, torch.zeros(2))
        return seen

    return contextvars.Context().run(run)


@pytest.mark.parametrize("eager_flag, traced_flag, expected", [
    (True, False, [True]),  # Pyro's JIT: validation on where it is called, off while it traces
    (False, False, [False]),  # validation off where it is called: the check is left out, as in eager code
    (None, False, [False]),
    (False, True, [True])])  # a trace of the user's own under validation
def test_a_trace_takes_the_validation_flag_of_its_caller(eager_flag, traced_flag, expected):
    assert _validation_seen_while_tracing(eager_flag, traced_flag) == expected


def test_scripting_a_raiser_leaves_the_warning_filters_of_the_other_threads_alone(monkeypatch):
    """Before, each raiser was compiled inside warnings.catch_warnings() + simplefilter("ignore",
    DeprecationWarning): the process's filters (every thread's) began with that filter meanwhile."""
    from tests.script_filters import filters_while_compiling

    monkeypatch.setattr(traced_checks, "_SCRIPTED", {})
    seen = filters_while_compiling(monkeypatch)
    outside = list(warnings.filters)
    raiser = traced_checks._scripted(EvidenceError)
    assert isinstance(raiser, torch.jit.ScriptFunction)
    assert seen and all(filters == outside for filters in seen)
    with pytest.raises(torch.jit.Error, match="EvidenceError: impossible"):
        raiser(torch.tensor(False), "impossible")
