"""Keep hybridpgm's own calls out of Pyro's global param store.

Under Pyro's default (global) parameter mode, running a :class:`pyro.nn.PyroModule`'s Pyro method
registers its parameters by name in the global param store.  A later module with the same names (a second
network with the same node names, a second VAE) is then handed the first one's tensors by Pyro, and
silently does not train.  hybridpgm's models keep their parameters as module attributes, which Pyro uses
under either mode, so hybridpgm's own calls -- :func:`hybridpgm.fit`, sampling, scoring, estimating a
likelihood -- run in a fresh scope of the store that is restored afterwards (:func:`own_param_store`);
what the user runs themselves (plain ``SVI``, ``Predictive``, a guide's first call) registers as Pyro
always does.

hybridpgm's helpers that run the *user's* model and guide (:func:`~hybridpgm.bayesian_nn.predictive_samples`,
:func:`~hybridpgm.diagnostics.check_vi`, :func:`~hybridpgm.diagnostics.from_pyro_svi`) cannot take an empty
store, since a hand-written guide keeps its ``pyro.param`` values only there.  They run in a scope holding
the user's store less the names of the given modules' own parameters (:func:`modules_own_their_params`):
Pyro copies a store entry over a module's parameter of the same name, so an entry left by an earlier module
(a notebook cell run twice) would silently replace the trained guide's parameters with the old ones.

The store is one per process.  Both scopes hold hybridpgm's process-wide lock
(:func:`~hybridpgm.global_state_lock.holding_global_state`) from the snapshot of the store to its restore: two
threads swapping it at once cleared each other's scope and wrote back each other's snapshot (a query's
parameters left in the user's store, the user's own parameters lost).  :func:`hybridpgm.fit` lets other threads
in between its steps with :func:`let_other_threads_in`, which puts the caller's store back for the gap, and with
it the caller's random streams: ``fit`` seeds torch's, NumPy's and Python's global streams, and another thread's
unseeded draw in the gap (``vae.sample(3, mean=False)``) moved fit's seeded stream, so that a seeded run was no
longer reproducible (step 0 loss 4.7383 against 5.1151 alone).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Callable, Iterator, TypeVar

import pyro
import torch
from pyro.nn import PyroModule
from pyro.params.param_store import ParamStoreDict
from pyro.nn.module import _make_name

from hybridpgm.global_state_lock import held_depth, holding_global_state, others_waiting, released_global_state
from hybridpgm.rng_scope import global_rng_states, set_global_rng_states

__all__ = ["frozen_aware_parameter", "let_other_threads_in", "module_param_names", "modules_own_their_params",
           "own_param_store"]

F = TypeVar("F", bound=Callable[..., Any])

#: .open: the :func:`own_param_store` scopes open in this thread, innermost last, each a dict with the store's
#: contents found on entry ("outer", :func:`_take_contents`), the lock depth before the scope took the lock ("depth")
#: and torch's random states found on entry ("rngs", :func:`~hybridpgm.rng_scope.global_rng_states`)
_SCOPES = threading.local()


def own_param_store(fn: F) -> F:
    """Run ``fn`` in a fresh scope of Pyro's param store (as ``pyro.get_param_store().scope()`` does), restored
    afterwards, so that nothing it registers reaches the user's store.  The call holds hybridpgm's process-wide
    lock (see the module's docstring); :func:`let_other_threads_in` gives it up for a while."""
    @functools.wraps(fn)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with _fresh_store():
            return fn(*args, **kwargs)
    return scoped  # type: ignore[return-value]


def _open_scopes() -> list[dict]:
    opened = getattr(_SCOPES, "open", None)
    if opened is None:
        opened = _SCOPES.open = []
    return opened


#: the three tables of :class:`pyro.params.param_store.ParamStoreDict` (name -> tensor, tensor -> name,
#: name -> constraint): what :meth:`~pyro.params.param_store.ParamStoreDict.clear` replaces
_STORE_TABLES = ("_params", "_param_to_name", "_constraints")


def _take_contents(store: Any) -> Any:
    """Take everything out of the param store ``store``, leaving it empty, and return it for :func:`_put_contents`.

    The store's three tables themselves are taken (and fresh empty ones put in their place), so the cost does not
    grow with the store: :meth:`~pyro.params.param_store.ParamStoreDict.get_state` copies every entry (and strips
    each real-valued tensor's ``unconstrained`` reference), which made every scoped hybridpgm call cost time in
    proportion to the user's store (0.4 ms per call at 1000 entries, 180 ms at 100000).  A store of another class
    than Pyro's (a subclass may keep more state, which only its own methods know) goes through
    ``get_state``/``clear`` instead."""
    if type(store) is ParamStoreDict and all(type(getattr(store, table, None)) is dict for table in _STORE_TABLES):
        taken = tuple(getattr(store, table) for table in _STORE_TABLES)
        for table in _STORE_TABLES:
            setattr(store, table, {})
        return taken
    state = store.get_state()
    store.clear()
    return state


def _put_contents(store: Any, contents: Any) -> None:
    """Make ``contents`` (from :func:`_take_contents`) the whole of ``store``'s contents; what it held is dropped."""
    if isinstance(contents, tuple):
        for table, value in zip(_STORE_TABLES, contents):
            setattr(store, table, value)
        return
    store.clear()
    store.set_state(contents)


@contextlib.contextmanager
def _fresh_store() -> Iterator[None]:
    """An empty param store for the body, the one found put back on exit (also by an exception), all under the
    lock.  Taking the store's contents out and putting them back costs the same whatever their size
    (:func:`_take_contents`).  The states of torch's generators found on entry are kept for
    :func:`let_other_threads_in` (about a microsecond; NumPy's and Python's would cost tens)."""
    depth = held_depth()
    with holding_global_state():
        store = pyro.get_param_store()
        scope = {"outer": _take_contents(store), "depth": depth, "rngs": global_rng_states(numpy_python=False)}
        opened = _open_scopes()
        opened.append(scope)
        try:
            yield
        finally:
            del opened[next(i for i in range(len(opened) - 1, -1, -1) if opened[i] is scope)]
            _put_contents(store, scope["outer"])


def let_other_threads_in() -> None:
    """Inside the innermost :func:`own_param_store` call of this thread (``fit``, between two steps): put the
    store that call found back, give up the lock that call took (and what this thread took after it; not a
    caller's hold) until another thread blocked on it has had it, then take the lock and the call's own store
    back (:func:`~hybridpgm.global_state_lock.released_global_state`).

    The random streams are swapped the same way: the call's own states of torch's CPU generator, the CUDA
    generators already initialised, NumPy's and Python's global streams (all of which ``fit`` seeds) are put back
    after the gap, whatever the other thread drew; for the gap torch's generators are put where the call found
    them (and where the last gap left them), so that another thread's unseeded draws neither move nor repeat
    the call's stream.  NumPy's and Python's stay as the call left them for the gap (hybridpgm draws nothing from
    them; taking their states on every entry would cost tens of microseconds).  A seeded ``fit`` thus gives the
    same losses whatever other threads draw between its steps.

    Another thread's hybridpgm calls thus run in the gap, each in its own scope, and what the user's own code
    registered in the caller's store meanwhile is kept.  Outside such a call, when a caller of this thread holds
    the lock (no other thread can take it), or when no other thread is waiting for the lock
    (:func:`~hybridpgm.global_state_lock.others_waiting`: a single-threaded ``fit`` pays one read per step), it does
    nothing."""
    opened = _open_scopes()
    if not opened or not others_waiting() or opened[-1]["depth"]:
        return
    scope = opened[-1]
    store = pyro.get_param_store()
    own = _take_contents(store)
    _put_contents(store, scope["outer"])
    own_rngs = global_rng_states()
    set_global_rng_states(scope["rngs"])
    try:
        with released_global_state(scope["depth"]):
            pass
    finally:  # the lock is held again
        scope["rngs"] = global_rng_states(numpy_python=False)
        set_global_rng_states(own_rngs)
        scope["outer"] = _take_contents(store)
        _put_contents(store, own)


def module_param_names(*programs: Any) -> set[str]:
    """The names under which Pyro registers the parameters of the ``PyroModule`` s among ``programs`` (modules,
    or bound methods of one such as ``vae.guide``) when they run in its global parameter mode."""
    names: set[str] = set()
    for program in programs:
        owner = program if isinstance(program, PyroModule) else getattr(program, "__self__", None)
        if not isinstance(owner, PyroModule):
            continue
        for sub in owner.modules():
            if not isinstance(sub, PyroModule):
                continue
            prefix, constrained = sub.__dict__.get("_pyro_name", ""), sub.__dict__.get("_pyro_params", {})
            for local in sub._parameters:
                base = local[: -len("_unconstrained")] if local.endswith("_unconstrained") else local
                names.add(_make_name(prefix, base if base in constrained else local))
    return names


def modules_own_their_params(fn: F) -> F:
    """Run ``fn(model, guide, ...)`` in a scope of Pyro's param store that holds the user's store less the
    entries named as the parameters of ``model``'s and ``guide``'s modules (:func:`module_param_names`):
    those modules run with their own parameters, a hand-written guide's ``pyro.param`` values stay visible,
    and the user's store is left as it was."""
    @functools.wraps(fn)
    def scoped(model: Any, guide: Any, *args: Any, **kwargs: Any) -> Any:
        with holding_global_state():
            store = pyro.get_param_store()
            state = store.get_state()
            for name in module_param_names(model, guide):
                state["params"].pop(name, None)
                state["constraints"].pop(name, None)
            with store.scope(state=state):
                return fn(model, guide, *args, **kwargs)
    return scoped  # type: ignore[return-value]


def frozen_aware_parameter(name: str, doc: str) -> property:
    """A read-only property for the :class:`torch.nn.Parameter` ``name`` that a :class:`~pyro.nn.PyroModule`
    holds directly (``self.<name> = nn.Parameter(...)``), so that a parameter the caller froze stays frozen.

    Read as a plain attribute, such a parameter goes through ``PyroModule.__getattr__``, which under Pyro's
    global parameter mode registers it with ``pyro.param``; the param store's ``__setitem__`` calls
    ``requires_grad_(True)`` on it, so one trace of the model unfreezes what ``requires_grad_(False)`` froze and
    :func:`hybridpgm.fit` or :class:`pyro.infer.SVI` trains it.  The property reads a trainable parameter
    exactly so (Pyro registers it and plain ``SVI`` trains it), and a frozen one past Pyro, unregistered: what
    :func:`pyro.module` does with the frozen parameters of a network.  Under ``module_local_params`` Pyro
    registers nothing and the read goes through it unchanged.  The parameter stays in the module's
    ``_parameters``, so its state-dict key and its name in the param store are those of a plain attribute.

    :param name: the attribute name.
    :param doc: the property's docstring.
    :returns: the property, to be assigned in the class body (``log_scale = frozen_aware_parameter(...)``).
    """

    def read(self: PyroModule) -> torch.Tensor:
        param = self.__dict__["_parameters"].get(name)
        if param is None:  # not (yet) set: PyroModule.__getattr__ raises nn.Module's AttributeError
            raise AttributeError(name)
        if param.requires_grad or pyro.settings.get("module_local_params"):
            return PyroModule.__getattr__(self, name)
        return param

    read.__name__ = name
    return property(read, doc=doc)
