"""Torch's module tooling in a model being saved, named for :func:`~hybridpgm.serialization.save`'s messages.

A model file rebuilds a model from its constructor arguments (:mod:`hybridpgm.serialization`), so what torch's
tools attach to a module after it was built is not in the file:

* a parametrization (:mod:`torch.nn.utils.parametrize`: ``parametrizations.spectral_norm``, ``weight_norm``,
  ``orthogonal``, or one registered by ``register_parametrization``), which turns a ``Linear`` into a
  ``ParametrizedLinear`` and its ``weight`` into ``parametrizations.weight.original``;
* the hook-based ``torch.nn.utils.spectral_norm`` and ``weight_norm`` and the pruning of
  :mod:`torch.nn.utils.prune`, each a forward pre-hook that recomputes the weight from ``weight_orig`` (and
  ``weight_u`` or ``weight_mask``);
* any other forward, forward pre-, backward or backward pre-hook.

:func:`tooling` names what one module carries of these, :func:`hooks` lists its hooks (what
:mod:`hybridpgm.serialization_structure` compares), and :func:`wrapper_refusal` says what to save instead of a
torch wrapper that holds the model as ``.module`` (``AveragedModel``, ``DataParallel``,
``DistributedDataParallel``).  Modules of torch are looked up where they were imported already: a model carries
pruning only when :mod:`torch.nn.utils.prune` was imported.

>>> from torch.nn.utils import parametrizations
>>> tooling(parametrizations.spectral_norm(nn.Linear(2, 2)))
['spectral_norm (torch.nn.utils.parametrizations) on weight']
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

__all__ = ["ADVICE", "HOOK_KINDS", "hook_name", "hooks", "tooling", "wrapper_refusal"]

#: the hook tables of a module (attribute names) and what each holds, in the order they are reported
HOOK_KINDS = {"_forward_pre_hooks": "forward pre-hook", "_forward_hooks": "forward hook",
              "_backward_pre_hooks": "backward pre-hook", "_backward_hooks": "backward hook"}
#: what to do instead, for a change a model file does not hold
ADVICE = ("apply it in the constructor of a module class decorated with hybridpgm.serialization.serializable "
          "(a model file rebuilds the model by calling the constructors, which then apply it again)")

#: the parametrizations of :mod:`torch.nn.utils.parametrizations`, by class name: the function that adds one
_PARAMETRIZATIONS = {"_SpectralNorm": "spectral_norm", "_WeightNorm": "weight_norm", "_Orthogonal": "orthogonal"}
#: the hook objects of torch's hook-based weight tools: (module, class name) -> the function that adds one
_NORM_HOOKS = {("torch.nn.utils.spectral_norm", "SpectralNorm"): "torch.nn.utils.spectral_norm",
               ("torch.nn.utils.weight_norm", "WeightNorm"): "torch.nn.utils.weight_norm"}
#: torch's wrappers that hold a model as ``.module``: (module, class name)
_WRAPPERS = {("torch.optim.swa_utils", "AveragedModel"): "an average of a model's weights (EMA or SWA)",
             ("torch.nn.parallel.data_parallel", "DataParallel"): "a data-parallel wrapper",
             ("torch.nn.parallel.distributed", "DistributedDataParallel"): "a data-parallel wrapper"}


def hook_name(hook: Any) -> str:
    """A hook as a message names it: a function or method by its qualified name, an object by its class."""
    if callable(hook) and hasattr(hook, "__qualname__"):
        return hook.__qualname__
    return type(hook).__qualname__


def hooks(module: nn.Module) -> list[tuple[str, str]]:
    """``(kind, name)`` of each hook ``module`` holds (``("forward pre-hook", "SpectralNorm")``), in the order of
    :data:`HOOK_KINDS`."""
    return [(kind, hook_name(hook)) for attribute, kind in HOOK_KINDS.items()
            for hook in getattr(module, attribute, {}).values()]


def _pruning(hook: Any) -> str | None:
    """The pruning methods of a :mod:`torch.nn.utils.prune` hook (``L1Unstructured``), else ``None``."""
    prune = sys.modules.get("torch.nn.utils.prune")
    if prune is None or not isinstance(hook, prune.BasePruningMethod):
        return None
    methods = getattr(hook, "_pruning_methods", (hook,)) if isinstance(hook, prune.PruningContainer) else (hook,)
    return ", ".join(type(method).__name__ for method in methods)


def _described(hook: Any, kind: str) -> str:
    """One hook: torch's weight tools by what they do to which tensor, any other by its kind and name."""
    made_by = _NORM_HOOKS.get((type(hook).__module__, type(hook).__name__))
    if made_by is not None:
        return f"the hook-based {made_by.rpartition('.')[2]} ({made_by}) on {getattr(hook, 'name', '?')}"
    if (methods := _pruning(hook)) is not None:
        return f"pruning ({methods}, torch.nn.utils.prune) of {getattr(hook, '_tensor_name', '?')}"
    return f"a {kind} {hook_name(hook)}"


def tooling(module: nn.Module) -> list[str]:
    """What ``module`` itself (not its sub-modules) carries of torch's tooling, one phrase each:
    ``"spectral_norm (torch.nn.utils.parametrizations) on weight"``, ``"the hook-based spectral_norm
    (torch.nn.utils.spectral_norm) on weight"``, ``"pruning (L1Unstructured, torch.nn.utils.prune) of weight"``,
    ``"a forward hook <lambda>"``."""
    found = []
    parametrizations = module._modules.get("parametrizations")
    if isinstance(parametrizations, nn.ModuleDict) and type(module).__module__ == "torch.nn.utils.parametrize":
        for tensor, chain in parametrizations.items():
            for step in chain:
                name = type(step).__name__
                found.append(f"{_PARAMETRIZATIONS[name]} (torch.nn.utils.parametrizations) on {tensor}"
                             if name in _PARAMETRIZATIONS else
                             f"the parametrization {name} (torch.nn.utils.parametrize) on {tensor}")
    for attribute, kind in HOOK_KINDS.items():
        found.extend(_described(hook, kind) for hook in getattr(module, attribute, {}).values())
    return found


def wrapper_refusal(module: nn.Module, where: str) -> str | None:
    """Why ``module``, a torch wrapper holding a model as ``.module`` (``AveragedModel``, ``DataParallel``,
    ``DistributedDataParallel``), is not saved and what to save instead; ``None`` for any other module."""
    what = _WRAPPERS.get((type(module).__module__, type(module).__name__))
    if what is None or not isinstance(getattr(module, "module", None), nn.Module):
        return None
    held = "averaged weights" if "average" in what else "weights"
    return (f"cannot save {where}: it is torch's {type(module).__name__}, {what}, which a model file does not "
            f"rebuild; save the model it holds instead, hybridpgm.save(wrapper.module, path): a module of its "
            f"own class, with the {held} (decorating torch's class with serializable would not help)")
