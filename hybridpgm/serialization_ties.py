"""Shared parameters and sub-modules in a model file: record them at save, tie them again at load.

A model may use one object in several places: one ``nn.Parameter`` as the
log-potential of several :class:`~hybridpgm.graphs.MarkovNet` factors, one
network in several :class:`~hybridpgm.graphs.cpd.Neural` CPDs, the likelihood
that a GP and its marginal likelihood both hold.  The state dict lists such an
object once per name, and a model rebuilt from constructor arguments would hold
one copy per name: equal at load, but trained apart afterwards.  So
:func:`tie_record` lists, as plain strings, the groups of names under which the
model holds one and the same sub-module, parameter or buffer, and :func:`retie`
makes the rebuilt model hold one object under each group again.

A module's parameters and sub-modules are listed under the first name it is
reached by (in the order of ``named_modules``); a shared module's own contents
are shared with it and not listed again.

>>> import torch
>>> net = torch.nn.Linear(2, 2)
>>> model = torch.nn.ModuleDict({"a": net, "b": net})
>>> tie_record(model)
{'modules': [['a', 'b']], 'parameters': [], 'buffers': []}
"""

from __future__ import annotations

from torch import nn

from hybridpgm.errors import CheckpointError

__all__ = ["retie", "tie_record"]

_KINDS = ("modules", "parameters", "buffers")


def tie_record(module: nn.Module) -> dict[str, list[list[str]]]:
    """The groups of two or more names under which ``module`` holds one object, by kind.

    :returns: ``{"modules": [[name, ...], ...], "parameters": [...], "buffers": [...]}``, names as in
        :meth:`~torch.nn.Module.named_modules` / :meth:`~torch.nn.Module.state_dict` (plain strings only,
        so the record loads with ``weights_only=True``).
    """
    names: dict[str, dict[int, list[str]]] = {kind: {} for kind in _KINDS}
    names["modules"][id(module)] = [""]

    def walk(parent: nn.Module, prefix: str) -> None:
        for kind, members in (("parameters", parent._parameters), ("buffers", parent._buffers)):
            for key, tensor in members.items():
                if tensor is not None:
                    names[kind].setdefault(id(tensor), []).append(prefix + key)
        for key, child in parent._modules.items():
            if child is None:
                continue
            seen = id(child) in names["modules"]
            names["modules"].setdefault(id(child), []).append(prefix + key)
            if not seen:  # a shared module's contents are listed under its first name only
                walk(child, prefix + key + ".")

    walk(module, "")
    return {kind: [group for group in names[kind].values() if len(group) > 1] for kind in _KINDS}


def retie(module: nn.Module, record: dict, path: object) -> None:
    """Make ``module`` hold one object under each group of names of ``record`` (the object of its first name).

    Groups are tied in the order recorded (modules first, enclosing ones before the ones inside them); what
    the rebuilt model shares already is left as it is (its constructor may share more than the saved model
    did, e.g. a newer GPyTorch's constraints: that is not undone).

    :param record: what :func:`tie_record` gave for the saved model.
    :param path: the model file, for messages.
    :raises CheckpointError: a name of the record that the rebuilt model does not have, or one it does not let
        be tied, an empty name or name part (``""``, the model itself; ``"a."``), a module group of which one name
        lies inside another (``["encoder", "encoder.0"]``: the module would hold itself); the message names the
        file and the names.
    """
    if not (isinstance(record, dict) and set(record) == set(_KINDS)
            and all(isinstance(groups, list) and all(isinstance(g, list) and len(g) > 1
                                                     and all(isinstance(n, str) for n in g) for g in groups)
                    for groups in record.values())):
        raise CheckpointError(f"model file {str(path)!r} holds a malformed record of shared parameters")
    for kind in _KINDS:
        for group in record[kind]:
            if bad := [n for n in group if "" in n.split(".")]:  # the model itself (""), an empty leaf ("a.")
                raise CheckpointError(f"model file {str(path)!r} shares {kind} under the names {group}, of which "
                                      f"{bad} name no {kind[:-1]} of a model")
            if kind == "modules" and (inside := [(a, b) for a in group for b in group if b.startswith(a + ".")]):
                raise CheckpointError(f"model file {str(path)!r} shares {kind} under the names {group}: "
                                      f"{inside[0][1]!r} lies inside {inside[0][0]!r}, which would hold itself")
    for kind in _KINDS:
        for group in record[kind]:
            target = _get(module, kind, group[0], path)
            for name in group[1:]:
                if _get(module, kind, name, path) is not target:
                    _set(module, kind, name, target)
            if any(_get(module, kind, name, path) is not target for name in group):
                raise CheckpointError(f"model file {str(path)!r}: the rebuilt {type(module).__name__} does not "
                                      f"hold one object under the names {group}, which the saved model shares")


def _split(name: str) -> tuple[str, str]:
    parent, _, leaf = name.rpartition(".")
    return parent, leaf


def _get(module: nn.Module, kind: str, name: str, path: object):
    if name == "" and kind == "modules":
        return module
    parent_name, leaf = _split(name)
    try:
        parent = module.get_submodule(parent_name)
    except AttributeError:
        parent = None
    members = None if parent is None else {"modules": parent._modules, "parameters": parent._parameters,
                                            "buffers": parent._buffers}[kind]
    if members is None or members.get(leaf) is None:
        raise CheckpointError(f"model file {str(path)!r} shares {kind} under the name {name!r}, which the rebuilt "
                              f"{type(module).__name__} does not have")
    return members[leaf]


def _set(module: nn.Module, kind: str, name: str, target) -> None:
    parent_name, leaf = _split(name)
    parent = module.get_submodule(parent_name)
    if kind == "modules":
        parent.add_module(leaf, target)  # in place (the order of the children is kept); names a PyroModule
    elif kind == "parameters":
        parent.register_parameter(leaf, target)
    else:
        parent.register_buffer(leaf, target, persistent=leaf not in parent._non_persistent_buffers_set)
