"""A model as a file describes it: the spec of a module and the module a spec builds.

:func:`module_spec` describes a module by its class and constructor arguments (:func:`encode`: plain data, with
tagged tensors, torch dtypes, devices and sizes, module arguments); :func:`build` calls the constructors a spec
names on the values :func:`decode` gives back.  :func:`hybridpgm.serialization.save` and
:func:`~hybridpgm.serialization.load` use them; the file's format is described there.

>>> import torch
>>> tensors = {}
>>> spec = module_spec(torch.nn.Linear(3, 2), tensors, "net")
>>> spec
{'class': 'torch.nn.Linear', 'layer': {'layer': 'Linear', 'args': {'in_features': 3, 'out_features': 2, 'bias': True}}}
>>> build(spec, tensors)
Linear(in_features=3, out_features=2, bias=True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridpgm.checks import shown_items, type_name
from hybridpgm.errors import CheckpointError
from hybridpgm.main_module import recorded_name
from hybridpgm.serialization_budget import constructed
from hybridpgm.serialization_compiled import unwrapped
from hybridpgm.serialization_dtypes import FLOATING_DTYPES, TAGS, dtype_names, restore_dtypes, tagged, untagged
from hybridpgm.serialization_layers import build_torch_module, torch_module_spec
from hybridpgm.serialization_payload import check_module_entry
from hybridpgm.serialization_registry import (_REGISTRY, _SPEC_ATTR, _SPECS, _qualname, _resolve, constructor_call,
                                             saved_as_module)
from hybridpgm.train.checkpoint import NOT_PLAIN, plain_scalar

__all__ = ["REFUSAL_ATTR", "build", "construct", "decode", "encode", "module_spec"]

#: the method by which a module refuses :func:`save`: ``module._hybridpgm_save_refusal()`` returns ``None``, or why
#: its file would not rebuild it (see :meth:`hybridpgm.gp.DeepKernelGP.training_data`)
REFUSAL_ATTR = "_hybridpgm_save_refusal"


def encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """``value`` (a constructor argument, the metadata) as plain data, its tensors added to ``tensors`` under the
    names the data give; ``where``: its path in the model, for messages.

    :raises CheckpointError: naming ``where``, for a value that is not plain data, a tensor or a savable module."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    # a NumPy scalar or 0-d array (np.int64(16), np.float64 from np.std, np.str_), an IntEnum: the builtin value,
    # which loading with weights_only=True reads back (the subclass itself would be pickled with its class)
    scalar = plain_scalar(value)
    if scalar is not NOT_PLAIN and type(scalar) in (bool, int, float, str):
        return scalar
    if (torch_value := tagged(value)) is not None:  # a dtype, device or Size: a tagged name (serialization_dtypes)
        return torch_value
    if isinstance(value, torch.Tensor):
        if value.is_meta:  # no values to write (the model's own parameters and buffers are refused by save)
            raise CheckpointError(f"cannot save {where}: a tensor of shape {tuple(value.shape)} on torch's meta "
                                  "device, which holds no values; build the model from a tensor that has them")
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().clone()
        # a parameter argument is given back as one (kept by the constructor, it is a weight of the state dict)
        return {"__tensor__": key, "parameter": value.requires_grad} if isinstance(value, nn.Parameter) else \
            {"__tensor__": key}
    if isinstance(value, (list, tuple)):
        return [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CheckpointError(f"cannot save {where}: a dict with non-string keys")
        return {"__dict__": {k: encode(v, tensors, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, nn.Module):
        value = unwrapped(value)  # a torch.compile wrapper: the module it compiles (rebuilt plain)
        # rebuilt before the constructor taking it runs it (on float64 data, say): it carries its dtypes
        return {"__module__": {**module_spec(value, tensors, where), "dtypes": dtype_names(value)}}
    raise CheckpointError(f"cannot save {where}: a {type_name(value)} is not plain data (int, float, str, bool, "
                          "list, tuple, dict, None, tensor, torch dtype or device, or a serializable module)")


def module_spec(module: nn.Module, tensors: dict, where: str) -> dict:
    """``{"class": ..., "spec": ...}`` (or a torch layer's, :mod:`hybridpgm.serialization_layers`) of ``module``.

    :raises CheckpointError: naming ``where``: a class that is not serializable, or redefined since the module
        was built, or a module that refuses to be saved (:data:`REFUSAL_ATTR`)."""
    cls = type(module)
    # a module whose constructor arguments no longer hold what rebuilds it (a GP's training data lost to the meta
    # device) says why: the file would load as a model built from garbage
    refusal = getattr(module, REFUSAL_ATTR, None)
    reason = refusal() if callable(refusal) else None
    if reason is not None:
        raise CheckpointError(f"cannot save {where}: {reason}")
    if _qualname(cls) in _SPECS:
        return {"class": _qualname(cls), "spec": encode(_SPECS[_qualname(cls)][0](module, where), tensors, where)}
    arguments = module.__dict__.get(_SPEC_ATTR)
    registered = _REGISTRY.get(_qualname(cls))
    # an nn.Sequential (its nested Sequentials and registered modules: as module arguments), or a layer alone (a
    # torch class decorated itself: its arguments)
    if not (arguments is not None and registered is cls) and (torch_spec := torch_module_spec(
            module, where, lambda m, at: encode(m, tensors, at) if saved_as_module(m) else None)) is not None:
        return torch_spec
    if arguments is not None and registered is not None and registered is not cls:  # a re-run cell, a reload
        raise CheckpointError(
            f"cannot save {where}: its class {_qualname(cls)} was defined again after it was built (a notebook "
            "cell re-run, importlib.reload, %autoreload), and a model file names the class, which now means the "
            "new one: build the object again from the current class (and load_state_dict its weights) to save it")
    if arguments is None or registered is not cls:
        raise CheckpointError(
            f"cannot save {where}: class {_qualname(cls)} is not serializable (decorate it with "
            "hybridpgm.serialization.serializable, or register a spec with register_spec)")
    # a tensor argument kept as a same-named tensor attribute (a GP's train_x after set_train_data) is
    # saved at its current value, a parameter if it was given as one (the constructor made one of a tensor)
    current = {k: (getattr(module, k) if isinstance(v, nn.Parameter) else getattr(module, k).detach())
               if isinstance(v, torch.Tensor) and isinstance(getattr(module, k, None), torch.Tensor) else v
               for k, v in arguments.items()}
    return {"class": _qualname(cls),
            "spec": {k: encode(v, tensors, f"{where}({k}=...)") for k, v in current.items()}}


def decode(value: Any, tensors: dict[str, torch.Tensor], place: Any = None) -> Any:
    """A value :func:`encode` wrote; ``place``: where a recorded device goes (the ``map_location`` of
    :func:`load`, :func:`~hybridpgm.serialization_dtypes.untagged`)."""
    if isinstance(value, list):
        return [decode(v, tensors, place) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            if (tensor := tensors.get(value["__tensor__"])) is None:  # a changed file; the meta holds no tensors
                held = f"it holds {shown_items(list(tensors), 5)}" if tensors else "none is held there"
                raise CheckpointError(f"model file names tensor {value['__tensor__']!r}, which it does not hold "
                                      f"({held})")
            return nn.Parameter(tensor, requires_grad=value["parameter"]) if "parameter" in value else tensor
        if "__dict__" in value:
            return {k: decode(v, tensors, place) for k, v in value["__dict__"].items()}
        if "__module__" in value:
            return build(value["__module__"], tensors, place)
        if any(tag in value for tag in TAGS):
            return untagged(value, place)
    return value


def build(spec: dict, tensors: dict, place: Any = None) -> nn.Module:
    """The module :func:`module_spec` described (a module argument in its saved dtypes, on the device of the
    tensors); its weights are loaded afterwards."""
    module = construct(spec, tensors, place)
    if tensors:  # a module argument goes on the device its saved tensor arguments were mapped to, as a user
        module.to(next(iter(tensors.values())).device)  # builds on CUDA (a DKL's extractor probes train_x)
    if "dtypes" in spec:  # a module argument, in its saved dtypes before it is passed on (older files lack them)
        if unknown := {name: d for name, d in spec["dtypes"].items() if d not in FLOATING_DTYPES}:
            raise CheckpointError(f"model file gives {spec['class']} weights dtypes {unknown}, which are not "
                                  f"floating dtypes (known: {sorted(FLOATING_DTYPES)})")
        restore_dtypes(module, {name: FLOATING_DTYPES[d] for name, d in spec["dtypes"].items()})
    return module


def construct(spec: dict, tensors: dict, place: Any) -> nn.Module:
    """The constructor call a module's record names, within the build's budget
    (:func:`~hybridpgm.serialization_budget.constructed`)."""
    check_module_entry(spec, "a module of the model")  # the kind's entries (a file may come from anywhere)
    if (module := constructed(spec["class"], build_torch_module, spec, lambda v: decode(v, tensors, place))) \
            is not None:
        return module
    if (name := recorded_name(spec["class"])) in _SPECS:  # an older release's __mp_main__.<name> is __main__'s
        return constructed(name, _SPECS[name][1], decode(spec["spec"], tensors, place))
    cls = _resolve(spec["class"])
    if not isinstance(spec["spec"], dict):
        raise CheckpointError(f"model file gives {spec['class']} a {type(spec['spec']).__name__} as its "
                              "constructor arguments, not a dict")
    args, kwargs = constructor_call(cls, {k: decode(v, tensors, place) for k, v in spec["spec"].items()})
    return constructed(spec["class"], cls, *args, **kwargs)
