"""Which classes a model file may name: the registry of :func:`serializable` and :func:`register_spec`.

:func:`~hybridpgm.serialization.save` records a model as the qualified name of its class and the data that
rebuilds it; :func:`~hybridpgm.serialization.load` turns that name back into a class through this registry
alone, never by importing a name read from the file:

* :func:`serializable`, a class decorator, registers a class and records each instance's constructor
  arguments (bound through :func:`inspect.signature`), for instances of exactly that class;
* :func:`register_spec` registers a ``to_spec`` / ``from_spec`` pair for a class whose constructor does not
  say everything (the built-in pairs are :data:`hybridpgm.serialization_specs.BUILTIN_SPECS`);
* :func:`_resolve` finds the class of a recorded name, importing only the fixed modules of :data:`MODEL_MODULES`
  (and the modules they import that define classes), whose import fills the registry: the name's own module
  first where it is one of these, never another module a file names (``hybridpgm.__main__`` would run the
  command line).

A constructor option that stays a public attribute is kept in step with the record: :func:`record_argument`
updates one recorded argument, so that ``save`` writes the value set after construction, not the constructor's
(an assignment to a :class:`hybridpgm.options.Option` calls it).

:mod:`hybridpgm.serialization` re-exports :func:`serializable`, :func:`register_spec` and
:data:`MODEL_MODULES`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

from hybridpgm.errors import CheckpointError
from hybridpgm.keyword_alias import as_keywords
from hybridpgm.main_module import MAIN, class_path, recorded_module, recorded_name
from hybridpgm.serialization_specs import BUILTIN_SPECS
from hybridpgm.serialization_structure import record_built

__all__ = ["MODEL_MODULES", "constructor_call", "record_argument", "register_spec", "saved_as_module",
           "serializable"]

#: modules imported (only these) to resolve a class name read from a model file
MODEL_MODULES = (
    "hybridpgm.energy.rbm", "hybridpgm.energy.dbn", "hybridpgm.energy.dbm",
    "hybridpgm.generative.vae", "hybridpgm.generative.sbn", "hybridpgm.generative.gan",
    "hybridpgm.gp.deep_kernel", "hybridpgm.gp.sv_deep_kernel", "hybridpgm.gp.gp_lstm", "hybridpgm.gp.kernels",
    "hybridpgm.graphs.bayes_net", "hybridpgm.graphs.cpd", "hybridpgm.graphs.crf", "hybridpgm.recipes.models",
)
#: the modules, besides :data:`MODEL_MODULES`, that define hybridpgm's serializable classes (imported by those):
#: a file naming one of their classes imports that module alone
_CLASS_MODULES = ("hybridpgm.graphs.cpd_gaussian", "hybridpgm.graphs.cpd_neural", "hybridpgm.graphs.cpd_table")

_REGISTRY: dict[str, type] = {}
#: qualified class name -> (``to_spec(module, where)``, ``from_spec(dict)``); the built-in ones are the graphs
#: declared by ``add`` calls, gpytorch's BernoulliLikelihood and the BayesianRegressor
_SPECS: dict[str, tuple[Callable, Callable]] = dict(BUILTIN_SPECS)
_SPEC_ATTR = "_hybridpgm_init"


def _qualname(cls: type) -> str:
    """The name a file records ``cls`` under: a class of the running script is ``__main__.<name>`` also in a
    ``spawn``/``forkserver`` child, whose script is the module ``__mp_main__`` (:mod:`hybridpgm.main_module`)."""
    return class_path(cls)


def serializable(cls: type) -> type:
    """Class decorator: register ``cls`` and record each instance's constructor arguments.

    Only instances of exactly ``cls`` are recorded (a subclass calling
    ``super().__init__`` keeps its own arguments), so decorate every class
    that should be loadable.  The names of the instance's parameters, buffers and hooks are recorded too
    (:func:`~hybridpgm.serialization_structure.record_built`): ``save`` refuses a model changed after
    construction in a way its file would not rebuild.

    :param cls: the :class:`~torch.nn.Module` subclass to register (its ``__init__`` is wrapped).
    :returns: ``cls`` itself.
    """
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if type(self) is cls:
            # a positional call of soon keyword-only parameters (keyword_only_soon) binds them by name
            args, kwargs = as_keywords(init, (self, *args), kwargs)
            bound = signature.bind(*args, **kwargs)
            arguments = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments[f"*{name}"] = value
                else:
                    arguments[name] = value
            object.__setattr__(self, _SPEC_ATTR, arguments)
            record_built(self)  # what save compares the model with (serialization_structure)

    cls.__init__ = __init__
    _REGISTRY[_qualname(cls)] = cls
    return cls


def constructor_call(cls: type, arguments: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """``(args, kwargs)`` that call ``cls`` with the constructor ``arguments`` :func:`serializable` recorded (the
    ``*args`` values under ``"*<name>"``, the others by name): a positional-only parameter goes by position, and so,
    where ``*args`` holds values, does every parameter before it (by name it would be given twice: ``Stack(n_in,
    *widths)`` saved as ``{"n_in": 3, "*widths": (8, 4)}`` is called ``Stack(3, 8, 4)``).

    :param cls: the registered class.
    :param arguments: its recorded arguments (a copy is taken)."""
    kwargs = dict(arguments)
    rest = list(kwargs.pop(next((k for k in kwargs if k.startswith("*")), "*"), []))
    args = []
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        by_position = parameter.kind is inspect.Parameter.POSITIONAL_ONLY or (
            rest and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not by_position or parameter.name not in kwargs:
            break
        args.append(kwargs.pop(parameter.name))
    return args + rest, kwargs


def register_spec(cls: type, to_spec: Callable[[Any], dict], from_spec: Callable[[dict], Any]) -> None:
    """Register how to save ``cls`` when its constructor arguments do not say
    everything: ``to_spec(module) -> dict`` of savable values and
    ``from_spec(dict) -> module`` (the state dict is loaded afterwards).

    :param cls: the module class; a later registration of the same class replaces an earlier one.
    :param to_spec: maps a module of ``cls`` to a dict of savable values.
    :param from_spec: maps that dict back to a new module (whose weights are then loaded).
    """
    _SPECS[_qualname(cls)] = (lambda module, where: to_spec(module), from_spec)


def saved_as_module(layer: Any) -> bool:
    """Whether a layer of an ``nn.Sequential`` that is not one of torch's standard layers is saved as a module
    argument is (its class and spec, :mod:`hybridpgm.serialization_layers`): a nested ``nn.Sequential``, a module
    of a class with a spec pair, or one whose constructor arguments :func:`serializable` recorded (a class
    defined again since is refused by :func:`~hybridpgm.serialization.save`, naming the redefinition)."""
    from torch import nn

    return type(layer) is nn.Sequential or _qualname(type(layer)) in _SPECS or \
        getattr(layer, "__dict__", {}).get(_SPEC_ATTR) is not None


def _importable(module: str) -> bool:
    """Whether :func:`_resolve` may import ``module`` to find a class a file names: a module of
    :data:`MODEL_MODULES` or of :data:`_CLASS_MODULES`, or the module of a class already registered (imported
    then, so importing it runs nothing).  No other module: importing one runs its body (``hybridpgm.__main__``
    runs the command line on the caller's ``sys.argv`` and exits)."""
    return module in MODEL_MODULES or module in _CLASS_MODULES or any(
        recorded_module(cls.__module__) == module for cls in _REGISTRY.values())


def _resolve(name: str) -> type:
    """The registered class of the qualified ``name`` a file records: its own module is imported first when
    :func:`_importable` allows it (loading an RBM imports no GPyTorch), then every module of
    :data:`MODEL_MODULES`; no other module is ever imported.

    A name of the saving script's ``__mp_main__`` (a ``spawn`` child of an older release wrote it) is read as its
    ``__main__`` (:func:`~hybridpgm.main_module.recorded_name`).

    :raises CheckpointError: ``name`` is not a string, or names no registered class (the name is given, with the
        module to import, or for a class of the saving script's ``__main__``, to define it again or move it to a
        module).
    """
    if not isinstance(name, str):
        raise CheckpointError(f"model file names class {name!r}, a {type(name).__name__}, not a qualified class name")
    name = recorded_name(name)
    own = name.rpartition(".")[0]
    if name not in _REGISTRY and _importable(own):
        importlib.import_module(own)
    if name not in _REGISTRY:
        for module in MODEL_MODULES:
            importlib.import_module(module)
    if name not in _REGISTRY:
        raise CheckpointError(f"model file names class {name!r}, which is not a registered hybridpgm class" + (
            f": it was defined in the script that saved the model ({own}, which no other program can import); "
            "define the same class, decorated with hybridpgm.serialization.serializable, in this program (a "
            "notebook cell will do) before loading, or move it to a module of its own that both programs import"
            if own.partition(".")[0] == MAIN else
            f" (a class of another module is registered when its module is imported before loading: import {own})"))
    return _REGISTRY[name]


def _takes(cls: type, name: str) -> bool:
    """Whether the constructor of ``cls`` takes an argument ``name`` (by name, or through ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    kind = parameters[name].kind if name in parameters else None
    return (kind not in (None, inspect.Parameter.VAR_POSITIONAL)
            or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()))


def record_argument(module: Any, name: str, value: Any) -> None:
    """Record ``value`` as the constructor argument ``name`` of ``module``, so that
    :func:`~hybridpgm.serialization.save` writes it and :func:`~hybridpgm.serialization.load` rebuilds the module
    with it (an assignment to a :class:`hybridpgm.options.Option` calls this).

    A no-op until the constructor has returned (:func:`serializable` records the arguments then), for an
    instance of an unregistered subclass (nothing is recorded for it), and for a registered subclass whose
    constructor takes no argument ``name`` (nor ``**kwargs``): such a subclass fixes the option itself, and
    :func:`~hybridpgm.serialization.load` rebuilds it with the value its constructor sets.  The recorded arguments
    are replaced, not changed in place, so a shallow :func:`copy.copy` keeps its own record.

    :param module: the module whose recorded arguments to update.
    :param str name: the constructor argument (the name of its ``__init__`` parameter).
    :param value: the value to record (already checked by the caller, as the constructor checks it).
    """
    recorded = module.__dict__.get(_SPEC_ATTR)
    if recorded is not None and _takes(type(module), name):
        object.__setattr__(module, _SPEC_ATTR, {**recorded, name: value})
