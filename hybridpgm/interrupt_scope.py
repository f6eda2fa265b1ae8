"""What an interrupted call must not leave behind: torch's grad and autocast state, and Pyro's handler stack
and dimension allocators.

A ``KeyboardInterrupt`` (Ctrl-C in a notebook) is raised between any two bytecodes, also inside the
``__exit__`` of a context manager before it has undone its ``__enter__``.  Most of what hybridpgm scopes is
restored in ``finally`` blocks that such an interrupt cannot skip, but a few scopes are torch's or Pyro's own
Python context managers, whose restore is several calls:

* ``torch.autocast(enabled=False)`` (:class:`~hybridpgm.precision_scope.exact_precision`, at every exact
  contraction under ``fit(precision="bf16")``) interrupted on its way out leaves autocast's *nesting level* at
  1 with autocast reading off: torch clears its cache of half-precision weight copies only when the level
  returns to 0, so every later autocast region of the process reused stale copies of weights that had since
  changed (an audit measured it: a bf16 ``nn.Linear`` ignored an in-place update of its weight, and the next
  bf16 ``fit`` of another model gave another loss);
* ``torch.set_grad_enabled(flag)`` switches the mode in its constructor, before the ``with`` protects it;
* a ``pyro.plate`` interrupted on its way out keeps its dimension allocated (``_DIM_ALLOCATOR``): every later
  ``fit`` of a model with a plate of that name raised ``ValueError: duplicate plate``.

:func:`restored_on_error` takes a snapshot of that state when a public call starts (a handful of C calls, no
host synchronisation) and, only when an exception leaves the call, puts it back: the grad mode, autocast's
enabled flag and dtype per device type and its nesting level (with the cast cache cleared when it is back at
0), all per thread.  ``fit`` runs under it, and so do the methods that run a Pyro program internally
(:func:`~hybridpgm.handler_scope.isolated_from_handlers`, which also restores Pyro's handler stack and
allocators in any case) and the Bayesian-network queries.  ``fit`` also drops the Pyro handlers and plate
dimensions pushed during the call, and only those (Pyro's stack and allocator are process-wide: a review found
a first version, which wrote the snapshot back wholesale, emptying another thread's running program's stack).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import torch
from pyro.poutine import runtime

__all__ = ["RuntimeState", "restore_runtime_state", "restored_on_error", "restores_on_error", "runtime_state"]

F = TypeVar("F", bound=Callable[..., Any])

#: the device types whose autocast state is kept (those a CPU or CUDA build runs)
_KINDS = ("cpu", "cuda")


class RuntimeState(NamedTuple):
    """What :func:`runtime_state` records (``pyro_stack`` and ``plate_dims`` are ``None`` when not asked for)."""

    grad_enabled: bool
    autocast_level: int
    autocast: tuple[tuple[str, bool, torch.dtype], ...]
    pyro_stack: list | None
    plate_dims: list | None


def _autocast_level() -> int:
    """Autocast's nesting level (torch has no getter: one increment and its decrement)."""
    level = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return level


def runtime_state(pyro: bool = False) -> RuntimeState:
    """The grad mode and autocast's state (per thread) now, and with ``pyro`` Pyro's handler stack and plate
    allocator (process-wide)."""
    return RuntimeState(torch.is_grad_enabled(), _autocast_level(),
                        tuple((k, torch.is_autocast_enabled(k), torch.get_autocast_dtype(k)) for k in _KINDS),
                        list(runtime._PYRO_STACK) if pyro else None,
                        list(runtime._DIM_ALLOCATOR._stack) if pyro else None)


def _truncate(current: list, saved: list) -> None:
    """Drop what was pushed onto ``current`` beyond ``saved``, only when ``current`` still begins with ``saved``
    (Pyro's stack and allocator are process-wide: another thread's entries are never touched)."""
    if len(current) > len(saved) and all(a is b for a, b in zip(current, saved)):
        del current[len(saved):]


def restore_runtime_state(state: RuntimeState) -> None:
    """Put ``state`` (:func:`runtime_state`) back: the grad mode, autocast's flags, dtypes and nesting level (the
    cast cache cleared at level 0), and, where recorded, the handlers and plate dimensions pushed since."""
    torch.set_grad_enabled(state.grad_enabled)
    for kind, enabled, dtype in state.autocast:
        if torch.is_autocast_enabled(kind) != enabled:
            torch.set_autocast_enabled(kind, enabled)
        if torch.get_autocast_dtype(kind) != dtype:
            torch.set_autocast_dtype(kind, dtype)
    level = _autocast_level()
    while level > state.autocast_level:
        level = torch.autocast_decrement_nesting()
    while level < state.autocast_level:
        level = torch.autocast_increment_nesting()
    if level == 0:  # what torch does when the outermost autocast region exits: no stale half-precision copies
        torch.clear_autocast_cache()
    if state.pyro_stack is not None:
        _truncate(runtime._PYRO_STACK, state.pyro_stack)
        _truncate(runtime._DIM_ALLOCATOR._stack, state.plate_dims)


@contextlib.contextmanager
def restored_on_error(pyro: bool = False) -> Iterator[None]:
    """Run the block; if an exception (a ``KeyboardInterrupt`` too) leaves it, restore the state it began in
    (:func:`restore_runtime_state`; with ``pyro``, Pyro's handlers and plate dimensions pushed inside it are
    dropped too) before the exception goes on."""
    state = runtime_state(pyro)
    try:
        yield
    except BaseException:
        restore_runtime_state(state)
        raise


def restores_on_error(fn: F) -> F:
    """Decorate ``fn`` (:func:`hybridpgm.fit`) to run under ``restored_on_error(pyro=True)``."""
    @functools.wraps(fn)
    def restoring(*args: Any, **kwargs: Any) -> Any:
        with restored_on_error(pyro=True):
            return fn(*args, **kwargs)
    return restoring  # type: ignore[return-value]
