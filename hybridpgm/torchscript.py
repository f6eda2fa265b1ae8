"""TorchScript functions compiled without torch's deprecation notice, the process's warning filters left alone.

:func:`torch.jit.script` warns that TorchScript is deprecated (a :class:`DeprecationWarning`, from torch 2.9 on)
every time it is called, and the compiler calls it again for each Python function the compiled one calls.  A
``with warnings.catch_warnings(): warnings.simplefilter("ignore", DeprecationWarning)`` around the call silenced
it, but that block replaces the filters of the whole process, not of the calling thread (Python before 3.14):
meanwhile another thread's deprecation warnings were dropped, and on its way out the block reset Python's record
of the warnings already shown (a warning shown once per location was shown again), as
:mod:`hybridpgm.infer.nvil_baselines` found for ``pyro.module``.

:func:`script_function` compiles with torch's own compiler behind that notice
(``torch.jit._script._script_impl``, what :func:`torch.jit.script` calls after warning), and compiles the functions
the compiled one calls that come from its own package the same way first, handing them to the compiler already
compiled (a resolution callback over the function's closure and globals, as torch's own), so the compiler never
calls :func:`torch.jit.script`.  The result is the function :func:`torch.jit.script` gives (torch caches one
compilation per function, whichever path made it).  Where torch lacks that entry point, or TorchScript is off
(``PYTORCH_JIT=0``), it falls back to :func:`torch.jit.script` (whose warning, if it gives one, then goes through
the caller's filters) or to the function itself.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.jit._script

__all__ = ["script_function"]


def script_function(fn: Callable) -> Callable:
    """``torch.jit.script(fn)`` for a plain function, without :func:`torch.jit.script`'s deprecation warning and
    without touching :data:`warnings.filters` (see the module docstring).

    :param fn: a Python function TorchScript compiles; the functions it calls that are defined in its top-level
        package (``hybridpgm``) are compiled first, the same way.
    :returns: the compiled :class:`torch.jit.ScriptFunction` (``fn`` itself where TorchScript is disabled).
    :raises Exception: what TorchScript's compiler raises for code it cannot compile.
    """
    compile_ = getattr(torch.jit._script, "_script_impl", None)
    resolver = getattr(torch._jit_internal, "createResolutionCallbackFromClosure", None)
    if compile_ is None or resolver is None:  # another torch: its public entry point
        return torch.jit.script(fn)
    if not torch.jit._state._enabled:  # PYTORCH_JIT=0: torch.jit.script returns the function itself
        return fn
    return _compiled(fn, (getattr(fn, "__module__", None) or "").partition(".")[0], compile_, resolver, {})


def _compiled(fn: Callable, package: str, compile_: Callable, resolver: Callable, done: dict) -> Callable:
    """``fn`` compiled, the functions of ``package`` it names compiled first (memoised in ``done``)."""
    if fn in done:
        return done[fn]
    names = resolver(fn)

    def resolve(name: str):
        value = names(name)
        if _own_function(value, package):
            return _compiled(value, package, compile_, resolver, done)
        return value

    done[fn] = compile_(fn, _rcb=resolve)
    return done[fn]


def _own_function(value, package: str) -> bool:
    """Whether ``value`` is a plain function of ``package`` that TorchScript would compile when called (not one
    marked ``@torch.jit.ignore``/``unused``)."""
    return (inspect.isfunction(value) and (getattr(value, "__module__", None) or "").partition(".")[0] == package
            and not torch._jit_internal.is_ignored_fn(value))
