"""Dtypes and devices in a model file: the torch values a constructor argument may be, and the weights' dtypes.

A model file is read with ``torch.load(..., weights_only=True)`` and its ``spec`` holds plain data, so the torch
values a constructor is commonly called with are stored as tagged plain values (:func:`tagged`) and rebuilt by
:func:`untagged`:

* a :class:`torch.dtype` as ``{"__dtype__": "float64"}`` (``nn.Linear(3, 4, dtype=torch.float64)`` in a
  serializable class, ``dtype=torch.long``), rebuilt as that dtype;
* a :class:`torch.device` as ``{"__device__": "cuda:0"}``, where the model was built; it is rebuilt as the device
  :func:`~hybridpgm.serialization.load` puts the model's tensors on, its ``map_location`` (a model built with
  ``device=torch.device("cuda:0")`` loads on the CPU by default, as the rest of the model does); a dict
  ``map_location`` maps the recorded device by its name as :func:`torch.load` maps storages, and a function
  leaves it as recorded;
* a :class:`torch.Size` as ``{"__size__": [2, 3]}``, rebuilt as a ``torch.Size`` (files written before this
  tag hold a size as a list, and load it as one; any other tuple is saved, and loaded, as a list).

The floating dtypes of the model's weights are recorded apart (:func:`dtype_names`, one per state-dict entry of a
module argument; the state dict's own tensors for the model) and given back to the rebuilt module before its
weights are loaded (:func:`restore_dtypes`), so that a float64 model loads as float64.

>>> tagged(torch.float64), untagged({"__dtype__": "float64"}, None)
({'__dtype__': 'float64'}, torch.float64)
>>> untagged({"__device__": "cuda:1"}, torch.device("cpu"))
device(type='cpu')
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_compiled import plain_names

__all__ = ["FLOATING_DTYPES", "TAGS", "dtype_names", "floating", "restore_dtypes", "tagged", "untagged"]

#: the tags of the torch values :func:`tagged` writes (each the only key of its dict)
TAGS = ("__dtype__", "__device__", "__size__")

#: floating dtypes a model file may name for the weights of a module argument
FLOATING_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float16, torch.bfloat16, torch.float32,
                                                               torch.float64, torch.complex64, torch.complex128)}


@functools.cache
def _all_dtypes() -> dict[str, torch.dtype]:
    """Every dtype of this torch by its name (``"float64"``, ``"int64"``, ``"bool"``); aliases share a name."""
    return {str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)}


def tagged(value: Any) -> dict | None:
    """``value`` as a tagged plain value when it is a :class:`torch.dtype`, :class:`torch.device` or
    :class:`torch.Size`, else ``None`` (a value of another type, encoded or refused by the caller)."""
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, torch.Size):
        return {"__size__": [int(n) for n in value]}
    return None


def untagged(value: dict, map_location: Any) -> Any:
    """The torch value a dict of :data:`TAGS` stands for.

    :param value: ``{"__dtype__": name}``, ``{"__device__": name}`` or ``{"__size__": [ints]}``.
    :param map_location: where the loaded model goes: a :class:`torch.device` replaces a recorded device, a dict
        maps its name (``{"cuda:1": "cuda:0"}``), anything else (``None``, a function) keeps it as recorded.
    :raises CheckpointError: an unknown dtype, a malformed device name or a size that is not a list of
        non-negative ints (a file changed, or written by another tool), naming the value.
    """
    if "__dtype__" in value:
        name, known = value["__dtype__"], _all_dtypes()
        if not isinstance(name, str) or name not in known:
            raise CheckpointError(f"model file names dtype {name!r}, which this torch does not have "
                                  f"(known: {sorted(known)})")
        return known[name]
    if "__device__" in value:
        name = value["__device__"]
        try:
            recorded = torch.device(name)  # checked whatever replaces it
        except (RuntimeError, TypeError) as error:
            raise CheckpointError(f"model file names device {name!r}, which is not a device name") from error
        if isinstance(map_location, torch.device):
            return map_location
        if isinstance(map_location, dict) and name in map_location:
            return torch.device(map_location[name])
        return recorded
    sizes = value["__size__"]
    if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes):
        raise CheckpointError(f"model file gives torch.Size {sizes!r}, which is not a list of non-negative ints")
    return torch.Size(sizes)


def floating(t: Any) -> bool:
    """Whether ``t`` is a tensor of a floating or complex dtype."""
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def dtype_names(module: nn.Module) -> dict[str, str]:
    """The dtype of each floating entry of ``module``'s state dict, by name (``"float64"``; names as the plain
    module has them, :func:`~hybridpgm.serialization_compiled.plain_names`)."""
    plain = plain_names(module)
    return {plain(name): str(t.dtype).removeprefix("torch.") for name, t in module.state_dict().items()
            if floating(t)}


def restore_dtypes(module: nn.Module, saved: dict[str, torch.dtype]) -> None:
    """Give the rebuilt ``module`` (made in the default dtype, its module arguments already in theirs) the
    ``saved`` floating dtypes of its state-dict entries, so that ``load_state_dict`` does not cast the weights
    (a float64 model would come back as float32).

    One saved dtype for all of them (``model.double()``) converts the whole module as ``.to`` did, its
    non-persistent buffers included, unless it holds tensors of a third dtype (neither that one nor the
    default); otherwise each tensor is converted to its own saved dtype, in place, so that tied and
    referenced tensors stay shared.

    :param module: the rebuilt module.
    :param saved: state-dict entry name -> the dtype it was saved in.
    """
    current = {**dict(module.named_parameters(remove_duplicate=False)),
               **dict(module.named_buffers(remove_duplicate=False))}
    wanted = {name: dtype for name, dtype in saved.items()
              if floating(current.get(name)) and current[name].dtype != dtype}
    if not wanted:
        return
    saved_dtypes = set(saved.values())
    current_dtypes = {t.dtype for t in current.values() if floating(t)}
    if len(saved_dtypes) == 1 and (len(current_dtypes) == 1
                                   or current_dtypes <= saved_dtypes | {torch.get_default_dtype()}):
        module.to(next(iter(saved_dtypes)))
        return
    with torch.no_grad():
        for name, dtype in wanted.items():
            current[name].data = current[name].data.to(dtype)
