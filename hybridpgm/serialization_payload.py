"""The shape of a model file's contents, checked before :func:`~hybridpgm.serialization.load` builds anything.

A model file may come from anywhere, so what :func:`torch.load` read from it is checked before it is used, and
each way it can be wrong is a :class:`~hybridpgm.errors.CheckpointError` naming the file and the entry:

* :func:`check_payload`: the entries :func:`~hybridpgm.serialization.save` always writes (``model``,
  ``tensors``, ``state_dict``, ``meta``, ``versions``) are there and of their types: dicts, the tensors a dict of
  names to tensors, the model's ``class`` a string;
* :func:`check_module_entry`: a module's record, the model's or a module argument's, holds what its kind needs
  (``spec``; ``layers`` for an ``nn.Sequential``; ``layer`` for a torch layer alone);
* :func:`refuse_meta`: a ``map_location`` of torch's ``meta`` device, which :func:`~hybridpgm.serialization.load`
  does not take (its constructors need the file's values), with what to do instead;
* :func:`rebuild_error`: what the build raised for the rest (an entry missing deeper in a spec, a value of the
  wrong type, a spec nested past Python's recursion limit), as a ``CheckpointError`` naming the file, the
  original error as its ``__cause__``.
"""

from __future__ import annotations

from typing import Any

import torch

from hybridpgm.errors import CheckpointError, ConfigError

__all__ = ["REQUIRED", "check_module_entry", "check_payload", "cpu_tensors", "in_file", "not_a_model_file",
           "rebuild_error", "refuse_meta"]

#: the entries every model file holds, and the type of each
REQUIRED = {"model": dict, "tensors": dict, "state_dict": dict, "meta": dict, "versions": dict}


def _changed(path: Any) -> str:
    return f"model file {str(path)!r}"


def check_payload(payload: dict, path: Any) -> None:
    """Refuse a model file's ``payload`` whose top-level entries are missing or of the wrong type.

    :param payload: what the file holds (a dict whose ``format`` was checked).
    :param path: the file, for messages.
    :raises CheckpointError: naming the file and the entry: a missing entry of :data:`REQUIRED`, one of another
        type, a tensor entry that is not a tensor under a string name, a model record without a string ``class``.
    """
    for key, kind in REQUIRED.items():
        if key not in payload:
            raise CheckpointError(f"{_changed(path)} has no {key!r} entry, which hybridpgm.save always writes: the "
                                  "file was changed or written by another tool")
        if not isinstance(payload[key], kind):
            raise CheckpointError(f"{_changed(path)} holds a {type(payload[key]).__name__} as its {key!r} entry, "
                                  f"not a {kind.__name__}")
    odd = [repr(k) for k, t in payload["tensors"].items() if not (isinstance(k, str) and isinstance(t, torch.Tensor))]
    if odd:
        raise CheckpointError(f"{_changed(path)} holds tensor entries {', '.join(odd[:5])} that are not tensors "
                              "under string names")
    if not isinstance(payload["model"].get("class"), str):
        raise CheckpointError(f"{_changed(path)} gives its model no class name (its 'class' entry is "
                              f"{payload['model'].get('class', '<absent>')!r})")


def check_module_entry(entry: Any, where: str) -> None:
    """Refuse the record of one module (``{"class": ..., "spec": ...}`` and the like) that lacks what its kind
    needs to be built.

    :param entry: the record read from the file.
    :param where: what holds it (``"the model"``, ``"a module argument"``), for messages.
    :raises CheckpointError: naming ``where`` and the entry.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str):
        raise CheckpointError(f"{where} is recorded as {type(entry).__name__} {_short(entry)}, not a dict with a "
                              "string 'class'")
    name = entry["class"]
    needed = "layers" if name == "torch.nn.Sequential" else "layer" if "layer" in entry else "spec"
    kind = list if needed == "layers" else dict if needed == "layer" else object
    if needed not in entry or not isinstance(entry[needed], kind):
        raise CheckpointError(f"{where}, a {name}, has no {needed!r} entry" if needed not in entry else
                              f"{where}, a {name}, has a {type(entry[needed]).__name__} as its {needed!r} entry, "
                              f"not a {kind.__name__}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _meta(device: Any) -> bool:
    return (isinstance(device, torch.device) and device.type == "meta") or \
        (isinstance(device, str) and device.partition(":")[0] == "meta")


def refuse_meta(map_location: Any, path: Any) -> Any:
    """``map_location`` of :func:`~hybridpgm.serialization.load`, unless it names torch's ``meta`` device (alone,
    or as a value of a dict): load rebuilds a model by calling its constructors on the values its file holds (a
    GP conditions on its training data, a layer is compared with its options), which a meta tensor lacks.

    :raises ConfigError: naming the file and what to do instead (load on the CPU, whose file is memory-mapped
        while it is read, then ``.to("meta")``; or read the architecture and the weights' shapes without building
        it: ``torch.load(path, weights_only=True, mmap=True)``, its ``model`` and ``state_dict`` entries).
    """
    given = list(map_location.values()) if isinstance(map_location, dict) else [map_location]
    if any(_meta(device) for device in given):
        raise ConfigError(f"hybridpgm.load does not take torch's meta device (map_location={map_location!r}) for "
                          f"{str(path)!r}: it rebuilds the model by calling its constructors on the values the file "
                          "holds, which meta tensors lack.  Load it on 'cpu' and call .to('meta') on the result, or "
                          "read the architecture without building it: hybridpgm.load_model(path).class_name, or "
                          "torch.load(path, weights_only=True, mmap=True)['model'], its class and constructor "
                          "arguments, and ['state_dict'], its weights, whose shapes are read without copying them "
                          "(the file is mapped)")
    return map_location


def in_file(error: CheckpointError, path: Any) -> CheckpointError:
    """``error`` raised while a model was rebuilt from ``path``, naming that file (the error itself when its
    message does already)."""
    if str(path) in str(error):
        return error
    return CheckpointError(f"cannot load {str(path)!r}: {error}")


def rebuild_error(error: Exception, name: str, path: Any) -> CheckpointError:
    """The :class:`CheckpointError` for ``error``, raised while the class ``name`` was rebuilt from the file
    ``path`` (the caller raises it ``from error``): a missing key or index, and a recursion too deep, are named
    by their type, since their own text (``'cpds'``) does not say what they are."""
    detail = f"{type(error).__name__} {error}" if isinstance(error, (LookupError, RecursionError)) else str(error)
    return CheckpointError(f"cannot rebuild {name} from {str(path)!r}: {detail}")


def cpu_tensors(value: Any) -> Any:
    """``value`` (a state-dict entry: a tensor, or a module's extra state) with each tensor, alone or in its lists,
    tuples and dicts, detached and on the CPU, as :func:`~hybridpgm.serialization.save` writes it."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if type(value) in (list, tuple):
        return type(value)(cpu_tensors(v) for v in value)
    if type(value) is dict:
        return {k: cpu_tensors(v) for k, v in value.items()}
    return value


def not_a_model_file(payload: Any, path: Any) -> str:
    """Why ``payload``, read from ``path``, is not a model file: a training checkpoint of :func:`hybridpgm.fit` (its
    ``module`` and ``players`` entries) is named as one, with what to do with it."""
    if isinstance(payload, dict) and "module" in payload and "players" in payload:
        return (f"{str(path)!r} is a training checkpoint written by hybridpgm.fit, not a model file: resume it with "
                "fit(..., checkpoint=path), or load its weights into the objective that wrote it, "
                "objective.module.load_state_dict(hybridpgm.train.load_checkpoint(path)['module']), then save the "
                "network you want (hybridpgm.save(objective.module['generator'], ...) for a GAN's)")
    return f"{str(path)!r} is not a hybridpgm model file (write one with hybridpgm.save)"
