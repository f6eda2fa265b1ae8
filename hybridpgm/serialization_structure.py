"""Whether a model file would rebuild the model as it is: its structure now against the structure its constructors
make, compared by :func:`~hybridpgm.serialization.save` before it writes anything.

:func:`~hybridpgm.serialization.load` rebuilds a model by calling its constructors with the arguments they were
given, then loads the weights into what they built.  A change made to the model after construction is not in the
file: a parametrization (``torch.nn.utils.parametrizations.spectral_norm(model.net[0])``), the hook-based
``spectral_norm`` or ``weight_norm``, pruning, or a parameter or buffer registered later renames or adds
state-dict entries (``net.0.parametrizations.weight.original`` where the constructor makes ``net.0.weight``), and
the file would not load; a hook (``register_forward_hook``) would be dropped, and the loaded model would compute
something else.  So ``save`` refuses such a model (:func:`check_rebuilds`), naming the entries, the hooks and what
torch tool made them (:mod:`hybridpgm.serialization_tooling`).

The comparison costs nothing for a model that was not changed: :func:`~hybridpgm.serialization.serializable`
records the :class:`Structure` of each instance when its constructor returns (:func:`record_built`); a graph
declared by ``add`` calls (:class:`~hybridpgm.graphs.BayesNet`, :class:`~hybridpgm.graphs.MarkovNet`), which its
file records as those calls, records the names of the entries its constructor and each call made outside the
modules that record their own (:func:`record_declared`: a table of ``add_factor``, a neural potential's layers;
each call adds only what it made, so declaring ``N`` nodes costs no ``N`` walks of the graph).  A model whose
recorded modules still have their structure, whose graphs still hold exactly the entries they recorded, and whose
other modules carry no hook and no parametrization (:func:`unchanged_since_built`), is not rebuilt.  Otherwise
the model is rebuilt from the data ``save`` is about to write, on the CPU, its random initialisation inside
:func:`~hybridpgm.rng_scope.restoring_global_rngs` (the caller's streams do not move), and compared with it: a
change the file does carry (an option assigned later, a layer appended to an ``nn.Sequential`` argument, a node
set by ``bn.cpds[name] = cpd``) passes, and a parameter or buffer registered by hand on a graph
(``bn.register_parameter("extra", ...)``, on its CPD map or its table of potentials) is refused, naming it.  That
rebuild takes as long, and as much memory, as the model's construction.  A graph pickled by a release that did
not record it is not rebuilt, as before: an entry registered by hand on it is refused by
:func:`~hybridpgm.serialization.load`, naming the entry.

A structure is compared by names only, not shapes (an argument saved at its current value, a GP's training
data, may change a shape as load will); a hook the constructor made and the model no longer has (an
``nn.LazyLinear``'s, removed by its first forward pass) is not refused, since the rebuilt model drops it as well.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, NamedTuple

import torch
from torch import nn

from hybridpgm.checks import shown_items
from hybridpgm.errors import CheckpointError
from hybridpgm.rng_scope import restoring_global_rngs
from hybridpgm.serialization_compiled import plain_names
from hybridpgm.serialization_tooling import ADVICE, hooks, tooling

__all__ = ["Structure", "check_rebuilds", "record_built", "record_declared", "structure", "unchanged_since_built"]

#: the attribute (in the instance's ``__dict__``) that holds the :class:`Structure` its constructor made
_BUILT = "_hybridpgm_built"
#: the attribute (in a graph's ``__dict__``) that holds the names its declaration made (:func:`record_declared`)
_DECLARED = "_hybridpgm_declared"


class Structure(NamedTuple):
    """The names a model file depends on: what a module's state dict holds and which hooks it runs."""

    #: the state-dict names of its parameters and persistent buffers (as the plain model names them, without the
    #: ``_orig_mod`` of a :func:`torch.compile` wrapper)
    keys: frozenset
    #: ``(module path, hook kind, hook name) -> count`` of the hooks of it and its sub-modules
    hooks: Counter


def structure(module: nn.Module) -> Structure:
    """The :class:`Structure` of ``module`` now (every name under which it holds a module, a shared one too)."""
    plain = plain_names(module)
    keys, found = set(), Counter()
    for path, sub in module.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        keys.update(plain(prefix + name) for name, p in sub._parameters.items() if p is not None)
        keys.update(plain(prefix + name) for name, b in sub._buffers.items()
                    if b is not None and name not in sub._non_persistent_buffers_set)
        found.update((plain(path), kind, name) for kind, name in hooks(sub))
    return Structure(frozenset(keys), found)


def record_built(module: nn.Module) -> None:
    """Record the :class:`Structure` of ``module`` as its constructor made it (called when the constructor of a
    :func:`~hybridpgm.serialization.serializable` class returns; kept by :func:`copy.deepcopy`), as a plain tuple: a
    pickle of the whole model names no hybridpgm class for it (and loads where this module does not exist)."""
    object.__setattr__(module, _BUILT, tuple(structure(module)))


def _has_record(module: nn.Module) -> bool:
    """Whether ``module`` records its own structure (:func:`record_built`) or declaration (:func:`record_declared`)."""
    return isinstance(module.__dict__.get(_BUILT), tuple) or isinstance(module.__dict__.get(_DECLARED), frozenset)


def _outside_records(module: nn.Module) -> frozenset:
    """The state-dict names (as the plain model names them) of the parameters and persistent buffers of ``module``
    and of its sub-modules that lie outside every sub-module with a record of its own (:func:`_has_record`)."""
    plain = plain_names(module)
    keys, pending = set(), [("", module)]
    while pending:
        path, sub = pending.pop()
        prefix = f"{path}." if path else ""
        keys.update(plain(prefix + name) for name, p in sub._parameters.items() if p is not None)
        keys.update(plain(prefix + name) for name, b in sub._buffers.items()
                    if b is not None and name not in sub._non_persistent_buffers_set)
        pending.extend((prefix + name, child) for name, child in sub._modules.items()
                       if child is not None and not _has_record(child))
    return frozenset(keys)


def record_declared(graph: nn.Module, path: str = "") -> None:
    """Record in ``graph``, a module declared by ``add`` calls that its file records as those calls, the entries
    its declaration made outside the modules that record their own (:func:`record_built`): with no ``path``, those
    of the whole graph (its constructor; :func:`unchanged_since_built` then compares them with what it holds); with
    ``path``, what an ``add`` call just made there is added to the record (a graph that records nothing, one
    pickled by an earlier release, is left so).  Kept by :func:`copy.deepcopy` and pickles, as a plain frozenset.

    :param graph: the graph (a :class:`~hybridpgm.graphs.BayesNet`, a :class:`~hybridpgm.graphs.MarkovNet`).
    :param path: the dotted path of the sub-module or the entry the call made (``"cpds.rain"``,
        ``"table_potentials.ab"``), whose parent modules it reaches through ``_modules``.
    """
    if not path:
        object.__setattr__(graph, _DECLARED, _outside_records(graph))
        return
    record = graph.__dict__.get(_DECLARED)
    if not isinstance(record, frozenset):
        return
    parent_path, _, name = path.rpartition(".")
    parent = graph
    for part in parent_path.split(".") if parent_path else ():
        parent = parent._modules[part]
    child = parent._modules.get(name)
    if child is not None:
        made = frozenset() if _has_record(child) else frozenset(f"{path}.{key}" for key in _outside_records(child))
    elif name in parent._parameters or (name in parent._buffers and name not in parent._non_persistent_buffers_set):
        made = frozenset((path,))
    else:
        made = frozenset()
    if not made <= record:
        object.__setattr__(graph, _DECLARED, record | made)


def _tooled(module: nn.Module) -> bool:
    """Whether ``module`` itself (not a sub-module) has a hook or a parametrization."""
    return bool(hooks(module)) or type(module).__module__ == "torch.nn.utils.parametrize"


def unchanged_since_built(model: nn.Module) -> bool:
    """Whether each module of ``model`` whose constructor recorded its structure (:func:`record_built`) still has
    that structure, each graph outside those that recorded its declaration (:func:`record_declared`) holds exactly
    the entries it recorded, and no module outside the recorded ones has a hook or a parametrization (the
    parameters and buffers of such a module that no graph records are the layers of an ``nn.Sequential``, which
    :mod:`hybridpgm.serialization_layers` compares)."""
    pending, checked = [(model, False)], set()
    while pending:
        module, covered = pending.pop()
        record = module.__dict__.get(_BUILT)
        if isinstance(record, tuple):
            if id(module) not in checked:
                checked.add(id(module))
                if structure(module) != record:
                    return False
            covered = True
        elif not covered:
            if _tooled(module):
                return False
            declared = module.__dict__.get(_DECLARED)
            if isinstance(declared, frozenset) and id(module) not in checked:
                checked.add(id(module))
                if _outside_records(module) != declared:
                    return False
        pending.extend((child, covered) for child in module._modules.values() if child is not None)
    return True


def check_rebuilds(model: nn.Module, rebuild: Callable[[], nn.Module], what: str,
                   state: Callable[[], dict] | None = None) -> None:
    """Refuse ``model`` when the module its model file would rebuild differs from it in the names of its
    parameters and persistent buffers, or lacks hooks it has.

    :param model: the model to save (a :func:`torch.compile` wrapper already taken off).
    :param rebuild: builds the module from the data the file will hold (called only when
        :func:`unchanged_since_built` cannot tell; inside :func:`~hybridpgm.rng_scope.restoring_global_rngs`).
        The constructors' warnings, if any, go through the caller's warning filters (Python shows a warning once
        per place it is raised, so one the constructor gave when the model was built is not shown again):
        silencing them with :func:`warnings.catch_warnings` would change the filters of every thread of the
        process for the rebuild, dropping another thread's warnings meanwhile (Python before 3.14).
    :param what: the model and the file, for messages (``"MLPDiscriminator to 'd.pt'"``).
    :param state: gives the state dict the file will hold: where the names differ, the rebuilt module loads it as
        :func:`~hybridpgm.serialization.load` would (strictly) and is compared again, so a module that makes an
        entry when it is loaded (a buffer its first forward pass registered, made again by its
        ``_load_from_state_dict``) is saved as before.
    :raises CheckpointError: naming the entries the rebuilt module lacks and those it has instead, the hooks it
        lacks, and the torch tools (parametrization, hook-based norm, pruning) found where they differ, with
        the way out; or the constructor's own exception, when the data would not rebuild the model at all.
    """
    if unchanged_since_built(model):
        return
    try:
        with restoring_global_rngs([torch.device("cpu")]):  # no catch_warnings: it would reset every thread's filters
            rebuilt = rebuild()
    except CheckpointError:
        raise
    except Exception as error:  # the constructors refused the arguments the file would hold
        raise CheckpointError(f"cannot save {what}: a model file rebuilds it by calling its constructors with "
                              f"the arguments they were given, and they raise {type(error).__name__}: {error}") \
            from error
    now, then = structure(model), structure(rebuilt)
    if now.keys != then.keys and state is not None:
        try:  # would the file load? then its entries are the ones the model has after the load
            rebuilt.load_state_dict(state())
            then = structure(rebuilt)
        except Exception:  # noqa: BLE001 -- any refusal of the load: the names below say why
            pass
    extra, missing = sorted(now.keys - then.keys), sorted(then.keys - now.keys)
    dropped = sorted((now.hooks - then.hooks).elements())
    forward = any(kind.startswith("forward") for _, kind, _ in dropped)
    if not (extra or missing or dropped):
        return
    parts = []
    if extra:
        parts.append(f"it holds {shown_items(extra, 6)}, which the rebuilt model does not have")
    if missing:
        parts.append(f"the rebuilt model has {shown_items(missing, 6)}, which it does not hold")
    if dropped:
        shown = shown_items([f"a {kind} {name} on {path or 'the model'}" for path, kind, name in dropped], 4, quote=str)
        parts.append(f"it runs {shown}, which a model file does not hold" + (
            " (the loaded model would compute something else)" if forward else " (the loaded model would not run it)"))
    paths = {path for path, _, _ in dropped} | {key.rpartition(".")[0] for key in extra + missing}
    found = [f"{path or 'the model'}: {', '.join(tools)}" for path, sub in model.named_modules()
             if (tools := tooling(sub)) and any(p == path or p.startswith(f"{path}.") for p in paths)]
    cause = (f"Changed after construction: {'; '.join(found)}" if found else
             "Changed after construction (a parametrization, pruning or a weight or spectral norm applied, a "
             "parameter, buffer, layer or hook added or removed)")
    observe = "; or remove a hook that only observes (handle.remove()) before saving" if dropped else ""
    raise CheckpointError(f"cannot save {what}: a model file rebuilds it by calling its constructors with the "
                          f"arguments they were given, and {'; '.join(parts)}.  {cause}; {ADVICE}{observe}")
