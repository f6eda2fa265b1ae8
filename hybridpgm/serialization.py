"""Save a trained model and load it back by itself: :func:`save` and :func:`load`.

A model file holds what is needed to rebuild the module without the script
that made it:

* ``class``: the qualified name of a hybridpgm class.  It is resolved through
  the registry that :func:`serializable` fills (:mod:`hybridpgm.serialization_registry`),
  never by importing a name read from the file (only the fixed hybridpgm modules
  of :data:`MODEL_MODULES` are imported to fill the registry);
* ``spec``: the constructor arguments as plain JSON-like data (ints, floats,
  strings, bools, lists, dicts, ``None``), with three kinds of tagged values:
  a tensor (stored beside the spec in ``tensors``), a nested serializable
  module (its own ``class`` and ``spec``) and a standard torch layer (:data:`TORCH_LAYERS`, with all its
  constructor options, see :mod:`hybridpgm.serialization_layers`) or an ``nn.Sequential`` of them (and of nested
  ones and of serializable modules, each saved as a module argument); a module argument also records its
  weights' dtypes and is rebuilt in them before the constructor taking it runs; a torch dtype, device or
  ``Size`` is tagged too and rebuilt as such (:mod:`hybridpgm.serialization_dtypes`: a recorded device is
  rebuilt as the device the model is loaded onto); a tuple is saved, and loaded, as a list;
* ``ties``: the groups of names under which the model holds one shared
  sub-module, parameter or buffer (:mod:`hybridpgm.serialization_ties`); the
  loaded model shares them again (a file without it loads as before);
* ``frozen``: the parameters with ``requires_grad=False``, frozen again by :func:`load` (an older file has none);
* ``state_dict``, the metadata given to :func:`save` (data set name, feature
  shape, ...) and the versions of hybridpgm, Pyro, torch and GPyTorch.

The file is written atomically (temporary file, fsync, rename) and read with ``torch.load(..., weights_only=True)``,
mapped, so that loading needs the memory of one copy of the weights (:mod:`hybridpgm.serialization_state`);
its entries are checked before anything is built (:mod:`hybridpgm.serialization_payload`), and what the
constructors it names allocate is bounded by what it holds (:mod:`hybridpgm.serialization_budget`).  The model
comes back in the dtypes it was saved in: a ``model.double()`` loads as float64, and a model whose parts have
different floating dtypes keeps each one.

How constructor arguments are captured: :func:`serializable` is a class
decorator that records the arguments ``__init__`` was called with (bound
through :func:`inspect.signature`), for instances of exactly that class.  A
class whose constructor does not say everything (a :class:`~hybridpgm.graphs.BayesNet`
built by :meth:`~hybridpgm.graphs.BayesNet.add` calls, a
:class:`~hybridpgm.graphs.MarkovNet` built by ``add_factor`` calls) has a spec
pair (:func:`register_spec`).  Saving anything else raises a
:class:`~hybridpgm.errors.CheckpointError` naming the class and the argument.
A module may also refuse to be saved as it is, through a method
``_hybridpgm_save_refusal()`` that returns why (``None``: it may be saved): a
:class:`~hybridpgm.gp.DeepKernelGP` whose training data went to the meta device
would be rebuilt from garbage, so :func:`save` raises a ``CheckpointError`` with
that reason and writes nothing, as it does for a model on the meta device or one changed after construction in
a way its constructors would not make again (:mod:`hybridpgm.serialization_structure`).

>>> import hybridpgm, tempfile, os
>>> vae = hybridpgm.VAE(64, 4, [16])
>>> path = os.path.join(tempfile.mkdtemp(), "vae.pt")
>>> _ = hybridpgm.save(vae, path, dataset="digits", feature_shape=[64])
>>> type(hybridpgm.load(path)).__name__
'VAE'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from hybridpgm.checks import positive_int, shown_items
from hybridpgm.errors import CheckpointError, CheckpointNotFoundError
from hybridpgm.paths import file_path
from hybridpgm.rng_scope import restoring_global_rngs
from hybridpgm.serialization_budget import build_within, file_budget
from hybridpgm.serialization_compiled import plain_names, plain_ties, unwrapped
# the spec of a module and the module a spec builds (under the private names they had here)
from hybridpgm.serialization_encoding import REFUSAL_ATTR as _REFUSAL_ATTR  # noqa: F401
from hybridpgm.serialization_encoding import build as _build, decode as _decode, encode as _encode
from hybridpgm.serialization_encoding import construct as _construct, module_spec as _module_spec  # noqa: F401
from hybridpgm.serialization_frozen import FROZEN, frozen_names, refreeze
from hybridpgm.serialization_layers import TORCH_LAYERS
from hybridpgm.serialization_payload import check_payload, cpu_tensors, in_file, not_a_model_file, rebuild_error, \
    refuse_meta
from hybridpgm.serialization_registry import MODEL_MODULES, register_spec, serializable
from hybridpgm.serialization_state import load_weights, owned
from hybridpgm.serialization_structure import check_rebuilds
from hybridpgm.serialization_ties import retie, tie_record
from hybridpgm.state_renames import upgrade_ties
from hybridpgm.train.atomic_write import os_reason
from hybridpgm.train.checkpoint import nonfinite_entries, plain_data, read_torch_file, unreadable_reason, \
    write_atomically
from hybridpgm.train.device import resolve_device
# re-exported: the versions recorded in model files were defined here, and callers import them from this module
from hybridpgm.versions import versions

__all__ = ["MODEL_MODULES", "SavedModel", "TORCH_LAYERS", "load", "load_model", "register_spec", "save",
           "serializable", "versions"]

FORMAT, FORMAT_VERSION = "hybridpgm-model", 1
# ---------------------------------------------------------------- save / load
class SavedModel(NamedTuple):
    """What :func:`load_model` returns.

    :param module: the rebuilt module with the saved weights, in eval mode.
    :param class_name: its qualified class name.
    :param meta: the keyword arguments given to :func:`save` (data set, feature shape, ...).
    :param versions: library versions at save time.
    """

    #: the rebuilt module with the saved weights, in eval mode
    module: nn.Module
    #: qualified class name
    class_name: str
    #: the keyword arguments given to :func:`save` (data set, feature shape, ...)
    meta: dict
    #: library versions at save time
    versions: dict


def save(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Write ``model`` (class, constructor arguments, weights) and ``meta`` to ``path`` atomically.

    :param model: a module of a class decorated with :func:`serializable` (every
        hybridpgm model family) or registered with :func:`register_spec`.
    :param path: the file to write (``.pt`` by convention; a str or ``os.PathLike``, ``~`` expanded,
        :func:`~hybridpgm.paths.file_path`).
    :param meta: plain data to keep beside the model, e.g. ``dataset="digits",
        feature_shape=[64]`` (as constructor arguments are: a torch dtype or device too, a tuple comes back as a
        list).
    :raises CheckpointError: naming the class or argument that cannot be saved (a torch layer, alone or in an
        ``nn.Sequential``, whose constructor options would not rebuild it as it is: its path and the option, or the
        parametrization, norm, pruning or hook it carries; a class of ``torch.nn`` that no file rebuilds; torch's
        ``AveragedModel`` or ``DataParallel``: save its ``.module``), a model changed after construction so that
        its constructors would build another (a parametrization, a hook-based spectral or weight norm, pruning, a
        parameter, buffer or hook added: the names and the tool, :mod:`hybridpgm.serialization_structure`),
        the parameters that hold NaN or infinity (buffers may be infinite: constraint bounds), the parameters,
        buffers and tensor constructor arguments on torch's meta device (no values), a module that refuses to be
        saved as it is (a :class:`~hybridpgm.gp.DeepKernelGP` whose training data went to the meta device: call
        its ``set_train_data`` first), or the file when ``path`` is a directory or the write fails (the previous file
        at ``path`` is kept).  Nothing is written then.

    Parameters, buffers and sub-modules the model holds under several names (one ``nn.Parameter`` in several
    factors, one network in several CPDs) are recorded and shared again by :func:`load`; parameters with
    ``requires_grad=False`` load frozen (:mod:`hybridpgm.serialization_frozen`).

    A module wrapped by :func:`torch.compile` (``model.encoder = torch.compile(model.encoder)``, a compiled
    constructor argument, or ``torch.compile(model)`` itself) is saved as the module it wraps, its weights under
    the plain module's names (``encoder.0.weight``, not ``encoder._orig_mod.0.weight``;
    :mod:`hybridpgm.serialization_compiled`): :func:`load` gives back the plain model, to be compiled again
    where wanted.
    """
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"save needs a torch module, got {type(model).__name__}")
    path = file_path(path, "model file", CheckpointError)
    model = unwrapped(model)  # torch.compile(model): the model it compiles
    plain = plain_names(model)  # compiled sub-modules: their weights under the plain model's names
    on_meta = [plain(name) for name, t in [*model.named_parameters(remove_duplicate=False),
                                    *model.named_buffers(remove_duplicate=False)] if t.is_meta]
    if on_meta:
        raise CheckpointError(f"refusing to save {type(model).__name__} to {str(path)!r}: {len(on_meta)} "
                              f"parameter(s)/buffer(s) on torch's meta device, which holds no values "
                              f"({shown_items(on_meta, 5)}); give the model storage (model.to_empty(device=...)) "
                              "and its weights (load_state_dict) first")
    tensors: dict[str, torch.Tensor] = {}
    spec = _module_spec(model, tensors, type(model).__name__)
    check_rebuilds(model, lambda: _build(spec, {k: t.clone() for k, t in tensors.items()}, torch.device("cpu")),
                   f"{type(model).__name__} to {str(path)!r}",  # not changed since built (a parametrization, a hook)
                   lambda: {plain(k): v for k, v in model.state_dict().items()})
    meta_tensors: dict[str, torch.Tensor] = {}
    encoded_meta = _encode(dict(meta), meta_tensors, "meta")
    if meta_tensors:
        raise CheckpointError("save: meta values must be plain data, not tensors")
    # a module's extra state (torch's get_extra_state) may be plain data: its tensors go to the CPU, its scalars
    # become builtins that weights_only loading reads back (a Path or an object there is refused by name)
    state, refused = plain_data({plain(k): cpu_tensors(v) for k, v in model.state_dict().items()}, "state_dict")
    if refused:
        raise CheckpointError(f"refusing to save {type(model).__name__} to {str(path)!r}: {unreadable_reason(refused)}")
    # buffers may be infinite by design (GPyTorch constraints' bounds); parameters must be finite
    bad = nonfinite_entries(state, infinite_ok=frozenset(f"[{plain(n)!r}]" for n, _ in
                                                         model.named_buffers(remove_duplicate=False)))
    if bad:
        shown = shown_items(bad, 5, quote=str)
        raise CheckpointError(f"refusing to save {type(model).__name__} to {str(path)!r}: {shown} hold(s) NaN or "
                              f"infinity")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": spec, "tensors": tensors,
               "ties": plain_ties(tie_record(model), plain), "state_dict": state, "meta": encoded_meta,
               FROZEN: frozen_names(model, plain), "versions": versions()}
    return write_atomically(path, payload, "model file")


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
               max_build_bytes: int | None = None) -> SavedModel:
    """Read a file written by :func:`save` (``weights_only=True``) and rebuild the model, in the floating
    dtypes it was saved in (a float64 model loads as float64).  The caller's random streams (torch's CPU and
    CUDA generators, NumPy's, Python's) are left as they were: the constructor's random initialisation, which
    the saved weights replace, runs inside :func:`~hybridpgm.rng_scope.restoring_global_rngs`.  Called inside
    :func:`torch.inference_mode`, it reads and builds the model outside that mode (with autograd still off): the
    module it returns holds ordinary tensors, which work after the block as well (inference tensors would make
    autograd and in-place updates raise there).

    :param path: a file written by :func:`save` (a ``str`` or :class:`os.PathLike`).
    :param map_location: the device to load onto (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a torch.device, or
        what :func:`torch.load` takes but ``"meta"``: load on the CPU, then ``.to("meta")``); a constructor argument
        that was a :class:`torch.device` is rebuilt as this device (a dict maps its name, a function keeps it).
    :param max_build_bytes: the most bytes its constructors may allocate (a trusted file; ``None``: see :func:`load`).
    :raises CheckpointNotFoundError: no file at ``path`` (a :class:`CheckpointError` and a
        :class:`FileNotFoundError`).
    :raises CheckpointError: a foreign file (or a directory, a FIFO ...), an empty, truncated or
        corrupt file (naming the file and which of these it is), an entry missing or of the wrong type
        (:mod:`hybridpgm.serialization_payload`; the ``KeyError``, ``TypeError`` or ``RecursionError`` met deeper
        in the spec is its ``__cause__``), an unknown class (only hybridpgm's model modules, :data:`MODEL_MODULES`,
        are ever imported to find one) or torch layer option,
        constructors asking for more than the bound (naming the class, the call, its bytes and the bound),
        weights that do not fit the rebuilt module, a record of shared parameters that does not fit it, or
        parameters that hold NaN or infinity; each message names the file.
    :raises ConfigError: a malformed or unsupported device name (``"gpu"``; ``"meta"``: constructors need the file's
        values, the message says what to do instead), a ``max_build_bytes`` not an int > 0.
    :raises DeviceError: for a device this machine does not have.
    """
    max_build_bytes = None if max_build_bytes is None else positive_int(max_build_bytes, "load max_build_bytes")
    if torch.is_inference_mode_enabled():
        with torch.inference_mode(False), torch.no_grad():
            return _load_model(path, map_location, max_build_bytes)
    return _load_model(path, map_location, max_build_bytes)


def _load_model(path: str | os.PathLike, map_location: Any, max_build_bytes: int | None) -> SavedModel:
    """:func:`load_model`, in the caller's inference mode."""
    path = file_path(path, "model file", CheckpointError)
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no model file at {str(path)!r}") from None
    except OSError as error:  # a name too long, a folder on the way that cannot be searched
        raise CheckpointError(f"cannot read model file {str(path)!r}: {os_reason(error)}") from error
    if isinstance(refuse_meta(map_location, path), (str, torch.device)):  # not meta: constructors need values
        map_location = resolve_device(map_location)
    payload = read_torch_file(path, "model file", map_location, mmap=True)  # its tensors may map the file
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(not_a_model_file(payload, path))
    check_payload(payload, path)  # the entries save writes, of their types, before anything is built
    name = payload["model"]["class"]
    try:
        payload["tensors"] = owned(payload["tensors"])  # the constructors may keep them: not views of the file
        # the constructors' random initialisation, overwritten below, leaves the caller's streams as they were
        devices = [t.device for t in payload["tensors"].values() if isinstance(t, torch.Tensor)]
        with restoring_global_rngs(devices + ([map_location] if isinstance(map_location, torch.device) else [])):
            module = build_within(file_budget(path, payload, max_build_bytes),
                                  lambda: _build(payload["model"], payload["tensors"], map_location), path)
        if "ties" in payload:  # files written before shared parameters were recorded hold none
            retie(module, upgrade_ties(module, payload["ties"]), path)  # names of the file's time
        load_weights(module, payload.pop("state_dict"), path)  # copied, then checked (serialization_state)
        refreeze(module, payload.get(FROZEN), path)  # requires_grad=False as saved (older files: as built)
        meta = _decode(payload["meta"], {})
    except CheckpointError as error:  # named by the file (a torch layer's, a tensor's, a class's message)
        if (named := in_file(error, path)) is error:
            raise
        raise named from error
    # a changed file's spec: an entry missing deep inside (KeyError), a value of another type, a nesting past
    # the recursion limit (a RecursionError is a RuntimeError); the constructors' refusals (ValueError)
    except (LookupError, RuntimeError, TypeError, ValueError, AttributeError) as error:
        raise rebuild_error(error, name, path) from error
    (module.to(map_location) if isinstance(map_location, torch.device) else module).eval()
    return SavedModel(module, name, meta, payload["versions"])


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
         max_build_bytes: int | None = None) -> nn.Module:
    """The module saved at ``path`` by :func:`save`, weights loaded, in eval mode (the caller's random streams
    do not move, see :func:`load_model`).  A file may come from anywhere, so the constructors it names may
    allocate at most :math:`\\max(64\\,\\mathrm{MiB}, 16 s)` bytes for a file of :math:`s` bytes plus the bytes
    of the tensors it holds (:mod:`hybridpgm.serialization_budget`): a 1.5 KB file naming ``RBM(12000, 12000)`` is
    refused before it allocates; a model whose weights its file does not hold (a
    :class:`~hybridpgm.bayesian_nn.BayesianRegressor`'s) and whose layers take over 64 MiB needs ``max_build_bytes``.

    :param path: a file written by :func:`save` (a ``str`` or :class:`os.PathLike`).
    :param map_location: the device to load onto, as :func:`load_model` takes it (default ``"cpu"``).
    :param max_build_bytes: the most bytes its constructors may allocate (a trusted file; ``None``: the bound above).
    :raises CheckpointError: as :func:`load_model` (constructors asking for more than the bound, among others).
    :raises ConfigError: as :func:`load_model` (a malformed device name, a ``max_build_bytes`` not an int > 0).
    :raises DeviceError: as :func:`load_model` (a device this machine lacks).
    """
    return load_model(path, map_location, max_build_bytes=max_build_bytes).module
