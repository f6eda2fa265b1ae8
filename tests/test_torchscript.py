"""TorchScript compilation that leaves the process's warning filters alone (hybridpgm/torchscript.py).

Before, hybridpgm silenced torch.jit.script's DeprecationWarning with warnings.catch_warnings(), which replaces
the filters of every thread of the process for the compilation (Python before 3.14)."""

import math
import threading
import warnings

import torch

from hybridpgm.torchscript import script_function
from tests.script_filters import filters_while_compiling


def _inner(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0.0) + math.pi


def _outer(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * _inner(x)  # a function of this package: compiled by script_function too, not by torch.jit.script


def test_a_function_and_the_functions_it_calls_compile_with_the_filters_untouched(monkeypatch):
    seen = filters_while_compiling(monkeypatch)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:  # the test's own filters, around the whole call
        warnings.simplefilter("always")
        inside = list(warnings.filters)
        scripted = script_function(_outer)
    assert list(warnings.filters) == before
    assert len(seen) >= 2 and all(filters == inside for filters in seen)  # _outer and _inner, no filter added
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]  # torch's notice not given
    assert isinstance(scripted, torch.jit.ScriptFunction)
    x = torch.tensor([-1.0, 0.5])
    assert torch.equal(scripted(x), _outer(x))


def test_another_threads_warning_during_the_compilation_is_still_recorded(monkeypatch):
    """A warning the user's other thread raises while hybridpgm compiles reaches the user's filters."""
    compile_ = torch.jit._script._script_impl

    def compiling_while_another_thread_warns(*args, **kwargs):
        thread = threading.Thread(target=lambda: warnings.warn("the other thread's warning", UserWarning))
        thread.start()
        thread.join()
        return compile_(*args, **kwargs)

    monkeypatch.setattr(torch.jit._script, "_script_impl", compiling_while_another_thread_warns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        script_function(_inner)
    assert [str(w.message) for w in caught] == ["the other thread's warning"]
