"""Modules wrapped by :func:`torch.compile` in a model file: saved as the plain modules they wrap.

``model.encoder = torch.compile(model.encoder)`` puts a ``torch._dynamo`` ``OptimizedModule`` in the model,
which holds the original module as its child ``_orig_mod``: the model's state dict then names the encoder's
weights ``encoder._orig_mod.0.weight`` where the plain model has ``encoder.0.weight``.  A model file is rebuilt
from constructor arguments, into the plain model, so :func:`~hybridpgm.serialization.save` writes every name as
the plain model has it: :func:`plain_names` finds the wrappers by walking
:meth:`~torch.nn.Module.named_modules` (never by matching the text ``_orig_mod`` in a name) and drops the
``_orig_mod`` component that each one adds; :func:`unwrapped` gives the module a wrapper holds (a compiled
constructor argument, or a compiled model as a whole, is saved as the module it compiles).  The loaded model is
the plain one; compile it again after :func:`~hybridpgm.serialization.load` where wanted.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
>>> model = torch.nn.ModuleDict({"encoder": torch.compile(net, backend="eager")})
>>> [plain_names(model)(name) for name in model.state_dict()]
['encoder.0.weight', 'encoder.0.bias']
"""

from __future__ import annotations

import sys
from typing import Callable

from torch import nn

__all__ = ["is_compiled", "plain_names", "plain_ties", "unwrapped"]

#: the child under which a ``torch._dynamo`` ``OptimizedModule`` holds the module it compiles
_ORIG = "_orig_mod"


def is_compiled(module: object) -> bool:
    """Whether ``module`` is the wrapper :func:`torch.compile` returns for a module (an ``OptimizedModule`` of
    ``torch._dynamo``; that module is only looked up where it was imported already: nothing can be compiled
    otherwise, and importing it is slow)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    wrapper = getattr(eval_frame, "OptimizedModule", None)
    return wrapper is not None and isinstance(module, wrapper) and isinstance(
        module._modules.get(_ORIG), nn.Module)


def unwrapped(module: nn.Module) -> nn.Module:
    """The module that ``module`` compiles (through nested wrappers), or ``module`` itself when it is no
    :func:`torch.compile` wrapper."""
    while is_compiled(module):
        module = module._modules[_ORIG]
    return module


def plain_names(module: nn.Module) -> Callable[[str], str]:
    """A function that gives a name of ``module``'s state dict, parameters, buffers or sub-modules as the plain
    model (every compiled sub-module replaced by the module it wraps) names it.

    The wrappers are found with ``named_modules(remove_duplicate=False)``, so a wrapper reached under several
    names is known under each; a wrapper inside a wrapped module (``a._orig_mod.b._orig_mod``) is undone from
    the innermost out.  A name that passes through no wrapper is given back as it is.
    """
    wrapped = [path for path, sub in module.named_modules(remove_duplicate=False) if is_compiled(sub)]
    if not wrapped:
        return lambda name: name
    # innermost first: a longer path lies inside (or beside) a shorter one, whose prefix its rewrite keeps
    inner = [(f"{path}.{_ORIG}" if path else _ORIG, path) for path in sorted(wrapped, key=len, reverse=True)]

    def plain(name: str) -> str:
        for held, path in inner:
            if name == held:
                name = path
            elif name.startswith(held + "."):
                name = (f"{path}." if path else "") + name[len(held) + 1:]
        return name

    return plain


def plain_ties(record: dict[str, list[list[str]]], plain: Callable[[str], str]) -> dict[str, list[list[str]]]:
    """A record of shared names (:func:`~hybridpgm.serialization_ties.tie_record`) in the plain model's names
    (``plain``, from :func:`plain_names`).

    A module that the model holds both compiled and plain (``model.a = net``, ``model.b = torch.compile(net)``) is
    listed as ``["a", "b._orig_mod"]``, which becomes ``["a", "b"]``; groups that come to share a name are one
    object in the plain model and are merged (into the place of the first), each name listed once.
    """
    out = {}
    for kind, groups in record.items():
        merged: list[list[str]] = []
        for group in groups:
            names = list(dict.fromkeys(plain(name) for name in group))
            meeting = [m for m in merged if not set(m).isdisjoint(names)]
            if meeting:
                first = meeting[0]
                for other in meeting[1:]:
                    first.extend(n for n in other if n not in first)
                    merged.remove(other)
                first.extend(n for n in names if n not in first)
            else:
                merged.append(names)
        out[kind] = [group for group in merged if len(group) > 1]
    return out
