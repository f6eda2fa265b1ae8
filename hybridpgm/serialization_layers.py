"""The standard torch layers a model file rebuilds, and their constructor options.

An ``nn.Sequential`` argument of a model (a deep kernel's feature extractor, a
Neural CPD's network) is saved as the list of its layers, each as its torch
class name and the constructor options that make it (:data:`TORCH_LAYERS`: the
usual layers of a dense or convolutional feature extractor), read from the
layer's attributes: a ``BatchNorm1d(4, affine=False)`` is saved with
``affine=False``, a ``Flatten(1, 2)`` with ``start_dim=1, end_dim=2``.  A sequence option is written as a list;
the options the layer keeps as the list it was given (``MaxPool2d([2, 2])``, ``Unflatten(1, [4, 8])``, as a
config read from YAML or JSON gives them) are named in the spec's ``lists`` and rebuilt as lists, those it keeps as
the :class:`torch.Size` it was given (``Unflatten(1, torch.Size([4, 8]))``) in its ``sizes`` and rebuilt as such,
the others as tuples (``Conv2d`` and ``LayerNorm`` store a tuple whatever they are given).  A layer
that is a nested ``nn.Sequential`` (``nn.Sequential(backbone, head)``), or a
module of a class decorated with :func:`~hybridpgm.serialization.serializable`,
is saved as a module argument is (its class and constructor arguments), the
caller's ``element`` function making its record (:func:`sequential_spec`).
Any other layer is refused, naming the way out: hold it in a class of one's own
decorated with ``serializable``, or save a ``state_dict``.

Before anything is written the layer is rebuilt from those options (on the
``meta`` device, so nothing is allocated) and compared with the original: its
public attributes, the names, presence and shapes of its parameters and
buffers, and its hooks.  A layer these options do not rebuild (an attribute
changed or added after construction, a parameter replaced or removed, a
forward hook, a hook-based ``spectral_norm``, ``weight_norm`` or pruning, a
parametrization: each named) is refused at save time with a
:class:`~hybridpgm.errors.CheckpointError` naming the layer and the option, so
that no file is written that loads back as a different network.

The layers of a network bayesianized by :func:`hybridpgm.bayesian_nn.bayesianize`
(``PyroModule[nn.Linear]``, ... whose parameters are :class:`~pyro.nn.PyroSample`
sites) are described the same way, as the plain torch layers they were made from.

>>> spec = layer_spec(torch.nn.Flatten(1, 2), "net[0]")
>>> spec
{'layer': 'Flatten', 'args': {'start_dim': 1, 'end_dim': 2}}
>>> build_layer(spec, "net[0]")
Flatten(start_dim=1, end_dim=2)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_compiled import unwrapped
from hybridpgm.serialization_tooling import ADVICE, HOOK_KINDS, tooling, wrapper_refusal

__all__ = ["TORCH_LAYERS", "build_layer", "build_sequential", "build_torch_module", "layer_spec", "sequential_spec",
           "torch_module_spec"]

#: the options of a convolution and of a max pooling
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
         "padding_mode")
_MAX_POOL = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
#: torch layers an ``nn.Sequential`` argument may hold: name -> the constructor options saved for it (each read
#: from the layer's attribute of that name, except ``bias``: whether the layer has a bias parameter)
TORCH_LAYERS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features", "bias"),
    "ReLU": ("inplace",), "Tanh": (), "Sigmoid": (), "ELU": ("alpha", "inplace"), "GELU": ("approximate",),
    "LeakyReLU": ("negative_slope", "inplace"), "Softplus": ("beta", "threshold"), "Identity": (),
    "Flatten": ("start_dim", "end_dim"), "Dropout": ("p", "inplace"),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats", "bias"),
    "LayerNorm": ("normalized_shape", "eps", "elementwise_affine", "bias"),
    # a convolutional feature extractor (a DKL on images): the layers whose spec is their constructor's options
    "Conv1d": _CONV, "Conv2d": _CONV, "MaxPool1d": _MAX_POOL, "MaxPool2d": _MAX_POOL,
    "AvgPool1d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "AdaptiveAvgPool1d": ("output_size",), "AdaptiveAvgPool2d": ("output_size",),
    "AdaptiveMaxPool1d": ("output_size", "return_indices"), "AdaptiveMaxPool2d": ("output_size", "return_indices"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats", "bias"),
    "GroupNorm": ("num_groups", "num_channels", "eps", "affine", "bias"), "Dropout1d": ("p", "inplace"),
    "Dropout2d": ("p", "inplace"), "SiLU": ("inplace",), "Mish": ("inplace",),
    "Hardtanh": ("min_val", "max_val", "inplace"),
    "PReLU": ("num_parameters", "init"), "Softmax": ("dim",), "LogSoftmax": ("dim",),
    "Unflatten": ("dim", "unflattened_size"),
}

#: the option that switches the weight and bias of a normalization layer on; its ``bias`` is saved only when
#: that is on and there is no bias (``bias=False``, newer than the layer's other options)
_AFFINE = {"BatchNorm1d": "affine", "BatchNorm2d": "affine", "GroupNorm": "affine", "LayerNorm": "elementwise_affine"}

#: the buffer :func:`~hybridpgm.bayesian_nn.bayesianize` adds to each layer with parameters
_PRIOR_SCALE = "_prior_scale"


def _torch_class(layer: nn.Module, bayesian: bool = False) -> str | None:
    """The name of the supported torch class ``layer`` is (``bayesian``: the ``PyroModule[...]`` of), else ``None``."""
    if not bayesian:
        name = type(layer).__name__
        return name if name in TORCH_LAYERS and type(layer) is getattr(nn, name, None) else None
    from pyro.nn import PyroModule

    for base in type(layer).__bases__:
        if base.__name__ in TORCH_LAYERS and base is getattr(nn, base.__name__) and type(layer) is PyroModule[base]:
            return base.__name__
    return None


def _has_parameter(layer: nn.Module, name: str) -> bool:
    """Whether ``layer`` has the parameter ``name``, a plain one or a Pyro sample site (read without sampling)."""
    return layer._parameters.get(name) is not None or name in getattr(layer, "_pyro_samples", {})


def _plain(value: Any, where: str, option: str) -> Any:
    """An option's value as plain data (``weights_only`` loading takes nothing else)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v, where, option) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot save {where}: its option {option}={value!r} is a {type(value).__name__}, "
                          "not plain data")


def layer_spec(layer: nn.Module, where: str, bayesian: bool = False) -> dict:
    """``{"layer": torch class name, "args": constructor options}`` of a supported torch layer.

    :param where: the layer's path in the model (``"DeepKernelGP(feature_extractor=...)[1]"``), for messages.
    :param bayesian: describe a layer of a network made by :func:`~hybridpgm.bayesian_nn.bayesianize` (a
        ``PyroModule[nn.Linear]``, ...), whose parameters must all be the sample sites with the priors that
        ``bayesianize`` gave them, as the plain layer it was made from.
    :raises CheckpointError: naming ``where`` and the option, when the layer is not of :data:`TORCH_LAYERS` or
        its options do not rebuild it as it is.
    """
    layer = unwrapped(layer)  # a layer wrapped by torch.compile: the layer it compiles
    name = _torch_class(layer, bayesian)
    if name is None:
        what = "a bayesianized network" if bayesian else "nn.Sequential"
        if tools := tooling(layer):  # a ParametrizedLinear: the parametrization is what no file holds
            raise CheckpointError(f"cannot save {where}: {what} holds a {type(layer).__name__} carrying "
                                  f"{', '.join(tools)}, which a model file does not rebuild; {ADVICE}")
        raise CheckpointError(f"cannot save {where}: {what} holds a {type(layer).__name__}; only "
                              f"{sorted(TORCH_LAYERS)} are rebuilt from a model file" + ("" if bayesian else
                                                                                         _way_out(layer)))
    args = {}
    for option in TORCH_LAYERS[name]:
        if option == "bias":
            has_bias = _has_parameter(layer, "bias")
            if name in _AFFINE and (has_bias or not getattr(layer, _AFFINE[name])):
                continue  # the default, or no weight and no bias: saved only when it says something (and so
                # a normalization layer's file loads on a torch without the option)
            args[option] = has_bias
        else:
            args[option] = _plain(getattr(layer, option), where, option)
    spec = {"layer": name, "args": args}
    # an option the layer keeps as the list it was given (MaxPool2d([2, 2]), Unflatten(1, [4, 8])): named, so that
    # it is rebuilt a list (the rest of the sequences come back tuples); older files name none
    if lists := [option for option, value in args.items() if type(value) is list and
                 type(getattr(layer, option)) is list]:
        spec["lists"] = lists
    # an option the layer keeps as the torch.Size it was given (Unflatten(1, torch.Size([4, 8]))): named, so that it
    # is rebuilt a torch.Size (older files name none: a tuple, which compares equal; older hybridpgm ignores it)
    if sizes := [option for option in args if type(getattr(layer, option)) is torch.Size]:
        spec["sizes"] = sizes
    _check_rebuilt(layer, spec, where, bayesian)
    return spec


def _way_out(layer: nn.Module) -> str:
    """What to do with a layer of an ``nn.Sequential`` that no file rebuilds."""
    way = "Hold the layer in a module class of your own decorated with" if type(layer).__module__.startswith(
        "torch.nn.") else f"Decorate {type(layer).__name__} with"
    return (f", besides nested nn.Sequentials and classes decorated with hybridpgm.serialization.serializable.  "
            f"{way} hybridpgm.serialization.serializable (its constructor arguments are then saved), or save the "
            "network's state_dict and rebuild the network in code")


def build_layer(spec: dict, where: str, device: str | None = None) -> nn.Module:
    """The torch layer that :func:`layer_spec` describes.

    :raises CheckpointError: an unknown layer or option, a record without the layer's name or its options as a
        dict (a file written by another tool, or changed), naming ``where``; a ``lists`` (``sizes``) entry that is
        not a list of the names of its list (``torch.Size``) options, an option named in both, a ``torch.Size``
        option that is not a list of integers; an option the running torch's class
        does not take (``BatchNorm1d(bias=False)``, written with a torch whose ``BatchNorm1d`` takes ``bias=``,
        read with torch 2.5), naming the option and the torch the file needs.
    """
    if not (isinstance(spec, dict) and isinstance(spec.get("args"), dict) and all(isinstance(k, str)
                                                                                for k in spec["args"])):
        shown = f"options {spec.get('args', '<absent>')!r}" if isinstance(spec, dict) else f"a {type(spec).__name__}"
        raise CheckpointError(f"model file gives the torch layer at {where} {shown}, not a dict of options by name")
    name, args = spec.get("layer"), spec["args"]
    if not isinstance(name, str) or name not in TORCH_LAYERS:
        raise CheckpointError(f"model file names torch layer {name!r} at {where}, which hybridpgm does not "
                              f"rebuild (known: {sorted(TORCH_LAYERS)})")
    if unknown := sorted(set(args) - set(TORCH_LAYERS[name])):
        raise CheckpointError(f"model file gives the {name} at {where} options {unknown}, which hybridpgm does not "
                              f"rebuild (known: {list(TORCH_LAYERS[name])})")
    layer_class = getattr(nn, name)
    lists, sizes = spec.get("lists", []), spec.get("sizes", [])
    for kind, named in (("list", lists), ("torch.Size", sizes)):
        if not (isinstance(named, list) and all(isinstance(option, str) and isinstance(args.get(option), list)
                                                for option in named)):
            raise CheckpointError(f"model file gives the {name} at {where} the {kind} options {named!r}, not a list "
                                  f"of the names of its options that hold a {kind} (its options: {sorted(args)})")
    if both := [option for option in lists if option in sizes]:  # no file writes it: layer_spec names either
        raise CheckpointError(f"model file gives the {name} at {where} the option(s) {both} as both a list (\"lists\") "
                              f"and a torch.Size (\"sizes\"); a saved option is one or the other: the file was "
                              f"changed or damaged")
    if bad := [option for option in sizes if not all(type(n) is int for n in args[option])]:  # torch.Size([2.5])
        raise CheckpointError(f"model file gives the {name} at {where} the torch.Size option(s) "
                              f"{', '.join(f'{option}={args[option]!r}' for option in bad)}, not a list of integers")
    # a sequence option (a kernel size, a shape) was saved as a list: the options named in ``lists`` were lists and
    # those in ``sizes`` torch.Size, which a layer that keeps its option as given (MaxPool2d, Unflatten) gets back;
    # the others were tuples
    args = {option: (list if option in lists else torch.Size if option in sizes else tuple)(value)
            if isinstance(value, list) else value for option, value in args.items()}
    if lacking := [option for option in args if not _takes(layer_class, option)]:
        given = ", ".join(f"{option}={args[option]!r}" for option in lacking)
        raise CheckpointError(f"model file gives the {name} at {where} the option {given}, which nn.{name} of "
                              f"this torch ({torch.__version__}) does not take: the file needs a torch whose {name} "
                              f"takes {', '.join(option + '=' for option in lacking)}")
    if device is None:
        return layer_class(**args)
    with torch.device(device):
        return layer_class(**args)


def _takes(layer_class: type, option: str) -> bool:
    """Whether the constructor of ``layer_class`` takes the keyword ``option`` (a newer torch adds some)."""
    parameters = inspect.signature(layer_class).parameters
    return option in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def sequential_spec(module: nn.Sequential, where: str, bayesian: bool = False,
                    element: Callable[[nn.Module, str], dict | None] | None = None) -> list[dict]:
    """:func:`layer_spec` of each layer of ``module``.

    :param element: ``element(layer, where)`` gives the record of a layer that is not of :data:`TORCH_LAYERS` (a
        nested ``nn.Sequential``, a module of a class decorated with
        :func:`~hybridpgm.serialization.serializable`: ``{"__module__": {...}}``, as a module argument is saved),
        or ``None`` for a layer it does not save (refused by :func:`layer_spec`, naming the way out).
    """
    specs = []
    for i, layer in enumerate(module):
        at, layer = f"{where}[{i}]", unwrapped(layer)  # a compiled layer: the layer it compiles
        own = None if element is None or _torch_class(layer) is not None else element(layer, at)
        specs.append(layer_spec(layer, at, bayesian) if own is None else own)
    return specs


def build_sequential(layers: list[dict], where: str,
                     element: Callable[[dict], nn.Module] | None = None) -> nn.Sequential:
    """The ``nn.Sequential`` that :func:`sequential_spec` describes; ``element`` builds a record of a module
    (``{"__module__": {...}}``)."""
    return nn.Sequential(*[element(layer) if element is not None and isinstance(layer, dict) and "__module__" in layer
                           else build_layer(layer, f"{where}[{i}]") for i, layer in enumerate(layers)])


def torch_module_spec(module: nn.Module, where: str,
                      element: Callable[[nn.Module, str], dict | None] | None = None) -> dict | None:
    """The spec of a module argument that is a torch module: an ``nn.Sequential`` of :data:`TORCH_LAYERS`
    (``{"class": "torch.nn.Sequential", "layers": [...]}``) or one of those layers alone (``{"class":
    "torch.nn.Linear", "layer": {...}}``); ``None`` for a module of another library (hybridpgm's own classes).

    :raises CheckpointError: naming ``where``: a layer these options do not rebuild (:func:`layer_spec`), or
        another class of :mod:`torch.nn` (``nn.Conv2d``, ``nn.LSTM``), which no file rebuilds, with the ways out; a
        layer carrying a parametrization (``ParametrizedLinear``), naming it; torch's ``AveragedModel`` or
        ``DataParallel``, saying to save its ``.module``.

    An ``nn.Sequential``'s layer that is a nested ``nn.Sequential`` or a registered module is recorded by
    ``element`` (:func:`sequential_spec`)."""
    if refusal := wrapper_refusal(module, where):  # torch's AveragedModel, DataParallel: their .module is saved
        raise CheckpointError(refusal)
    if type(module) is nn.Sequential:
        return {"class": "torch.nn.Sequential", "layers": sequential_spec(module, where, element=element)}
    if (tools := tooling(module)) and type(module).__module__ == "torch.nn.utils.parametrize":
        raise CheckpointError(f"cannot save {where}: it is a {type(module).__name__} carrying {', '.join(tools)}, "
                              f"which a model file does not rebuild; {ADVICE}")
    name = _torch_class(module)
    if name is not None:
        return {"class": f"torch.nn.{name}", "layer": layer_spec(module, where)}
    if type(module).__module__.startswith("torch.nn."):  # torch's own class: decorating it is no way out
        raise CheckpointError(f"cannot save {where}: it is a torch.nn.{type(module).__name__}, which a model file "
                              f"does not rebuild; only {sorted(TORCH_LAYERS)} are rebuilt (alone or in an "
                              "nn.Sequential).  Hold the layer in a module class of your own decorated with "
                              "hybridpgm.serialization.serializable (its constructor arguments are then saved)")
    return None


def build_torch_module(spec: dict, element: Callable[[dict], nn.Module] | None = None) -> nn.Module | None:
    """The torch module that :func:`torch_module_spec` describes, else ``None`` (a spec of another kind);
    ``element`` builds an ``nn.Sequential``'s layer recorded as a module (:func:`build_sequential`)."""
    if spec["class"] == "torch.nn.Sequential":
        return build_sequential(spec["layers"], "torch.nn.Sequential", element)
    if "layer" in spec:
        return build_layer(spec["layer"], spec["class"])
    return None


def _public(layer: nn.Module) -> dict:
    return {k: v for k, v in vars(layer).items() if not k.startswith("_") and k != "training"}


def _tensors(layer: nn.Module, sampled: bool = False) -> dict[str, tuple[str, tuple | None]]:
    """``name -> (kind, shape)`` of the parameters, Pyro sample sites and buffers ``layer`` has (shape ``None``:
    an empty slot; a sample site's shape is the one its prior was made for); ``sampled``: the parameters as
    sample sites."""
    found: dict[str, tuple[str, tuple | None]] = {}
    for n, p in layer._parameters.items():
        found[n] = ("sample site" if sampled and p is not None else "parameter", None if p is None else tuple(p.shape))
    for n, prior in getattr(layer, "_pyro_samples", {}).items():
        found[n] = ("sample site", getattr(prior, "weight_shape", None))
    for n, b in layer._buffers.items():
        kind = "non-persistent buffer" if n in layer._non_persistent_buffers_set else "buffer"
        found[n] = (kind, None if b is None else tuple(b.shape))
    return found


def _describe(kind: str, shape: tuple | None) -> str:
    if kind == "nothing":
        return "absent"
    return f"an empty {kind} slot (None)" if shape is None else f"a {kind} of shape {shape}"


def _check_rebuilt(layer: nn.Module, spec: dict, where: str, bayesian: bool) -> None:
    """Refuse ``layer`` unless it has no hooks (checked first and named: a hook-based ``spectral_norm``,
    ``weight_norm`` or pruning, :mod:`hybridpgm.serialization_tooling`) and the layer its ``spec`` builds (and
    ``bayesian``: bayesianizes) has its attributes and tensors."""
    rebuilt = build_layer(spec, where, device="meta")  # allocates nothing
    name, args = spec["layer"], ", ".join(f"{k}={v!r}" for k, v in spec["args"].items())
    # first: a hook-based norm or pruning also turns the weight into a plain attribute, which the hook recomputes
    for hooks, kind in HOOK_KINDS.items():
        if getattr(layer, hooks, None):
            raise CheckpointError(f"cannot save {where}: the {name} has {kind}s ({', '.join(tooling(layer))}), which "
                                  f"a model file does not hold; {ADVICE}")
    have, want = _public(layer), _public(rebuilt)
    for option in sorted(set(have) | set(want)):
        a, b = have.get(option, "<absent>"), want.get(option, "<absent>")
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or isinstance(a, bool) != isinstance(b, bool) \
                or a != b:
            raise CheckpointError(f"cannot save {where}: the {name}'s attribute {option}={a!r} is not what the "
                                  f"options saved for it, {name}({args}), give ({b!r}); a model file could not "
                                  "rebuild this layer")
    have_t, want_t = _tensors(layer), _tensors(rebuilt, sampled=bayesian)
    if bayesian:
        _check_priors(layer, where, bool(getattr(layer, "_pyro_samples", {})))
        have_t.pop(_PRIOR_SCALE, None)
    for tensor in sorted(set(have_t) | set(want_t)):
        a, b = have_t.get(tensor, ("nothing", None)), want_t.get(tensor, ("nothing", None))
        if a != b:
            raise CheckpointError(f"cannot save {where}: its {tensor} is {_describe(*a)}, but the options saved for "
                                  f"it, {name}({args}), give {_describe(*b)}; a model file could not rebuild this "
                                  "layer")
    if layer._modules:
        raise CheckpointError(f"cannot save {where}: the {name} holds sub-modules {list(layer._modules)}, which "
                              "a model file does not rebuild")


def _check_priors(layer: nn.Module, where: str, sampled: bool) -> None:
    """Refuse a bayesianized layer whose sites do not have the priors :func:`~hybridpgm.bayesian_nn.bayesianize`
    gave (a Gaussian of the scale in its ``_prior_scale`` buffer)."""
    if sampled and not isinstance(layer._buffers.get(_PRIOR_SCALE), torch.Tensor):
        raise CheckpointError(f"cannot save {where}: it has Pyro sample sites but no {_PRIOR_SCALE} buffer; only "
                              "networks made by hybridpgm.bayesian_nn.bayesianize are rebuilt from a model file")
    for site, prior in layer._pyro_samples.items():
        if not hasattr(prior, "weight_shape") or getattr(prior, "__module__", None) != "hybridpgm.bayesian_nn":
            raise CheckpointError(f"cannot save {where}: its {site} has the prior {prior!r}, not the Gaussian "
                                  "prior of hybridpgm.bayesian_nn.bayesianize; a model file could not rebuild it")
