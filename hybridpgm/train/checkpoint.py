"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds the module's ``state_dict``, each player's optimizer and
scheduler state, the objective's extra state, every RNG state (torch CPU and
CUDA, Python, NumPy: :mod:`~hybridpgm.train.checkpoint_rng`), the step, the data seed and the history, so a resumed
run continues bit for bit where it stopped (on CPU).  A multi-process run also
keeps each rank's RNG states and its own buffers and objective state
(:mod:`hybridpgm.train.rank_states`: a persistent chain or a running statistic that each rank
updates from its own shard), which a resume on the same number of ranks puts
back on each rank.  It is written to a
temporary file in the same folder, flushed to disk, and renamed over the
target, so a run killed mid-write leaves the previous checkpoint intact.

A write goes through :func:`~hybridpgm.train.atomic_write.write_atomically` (a
temporary file, fsync, rename: a failed write names the file and the OS reason and
keeps the previous checkpoint; only a regular file is ever replaced), and a read
through :func:`~hybridpgm.train.torch_load.read_torch_file` (``weights_only=True``,
each zip member's CRC-32 checked).  A state holding a non-finite floating-point
tensor is never written, and one read back is checked the same way
(:func:`check_finite_checkpoint`): one sum per tensor, read at once, and an exact scan of the tensors whose sum is
not finite only (:func:`nonfinite_entries`).

A checkpoint holds no non-finite *Python float* either: those a state may hold outside tensors (a
``ReduceLROnPlateau``'s ``best`` and ``mode_worse``, infinite before its first step; the history's NaN loss of
a step skipped under ``skip_nonfinite`` in a checkpoint of format 2) are written as the tagged dict
``{"__hybridpgm_float__": "inf"}`` (``"-inf"``, ``"nan"``; :func:`encode_nonfinite_floats`) and decoded back by
:func:`load_checkpoint`, so a raw ``torch.load(path, weights_only=True)`` of any checkpoint finds only finite numbers.
A run's history is written (by :class:`~hybridpgm.train.run_checkpoint.RunCheckpoint`) as one tensor per series,
its non-finite values coded apart (:mod:`hybridpgm.train.checkpoint_history`: a write costs O(1) Python work per
series, not per step), and :func:`load_checkpoint` gives it back as the lists of
:meth:`~hybridpgm.train.history.History.state_dict`, as it reads the lists of an older checkpoint.

Outside tensors a checkpoint holds only the plain data that ``weights_only`` loading reads back (``None``,
``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``torch.Size``/``device``/``dtype``, and lists,
tuples, sets and dicts of them; :func:`plain_data`).  What a state may hold that is a number or a string in another
type is stored as the builtin one: a NumPy scalar or 0-d array (a learning rate from ``np.logspace``, a
``LambdaLR`` returning ``np.exp(...)``) as its ``.item()``, an ``IntEnum`` or another subclass of ``int``,
``float`` or ``str`` as that builtin.  Anything else (a ``Path``, an ``Enum``, a NumPy array, an object) is
refused at the first write, naming its place in the checkpoint: written, it would make the checkpoint
unreadable.
"""

from __future__ import annotations

import collections
import copy
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from hybridpgm.checks import shown_items, type_name
from hybridpgm.errors import CheckpointError
from hybridpgm.paths import file_path
# re-exported: the file I/O lived here, and hybridpgm.serialization and users import it from this module
from hybridpgm.train.atomic_write import check_replaceable, remove_stale_temporaries, write_atomically
from hybridpgm.train.checkpoint_history import is_packed_history, unpacked_history
from hybridpgm.train.checkpoint_rng import rng_state, set_rng_state  # re-exported: they lived here
from hybridpgm.train.chunked_finite import all_finite, any_nan, finite_sums
from hybridpgm.train.torch_load import check_readable, read_torch_file

__all__ = ["buffer_paths", "check_finite_checkpoint", "check_readable", "check_replaceable",
           "decode_nonfinite_floats", "encode_nonfinite_floats", "load_checkpoint", "nonfinite_entries",
           "parameter_paths", "plain_data", "plain_scalar", "read_torch_file", "remove_stale_temporaries", "rng_state",
           "save_checkpoint", "set_rng_state", "unreadable_reason", "write_atomically"]

#: the checkpoint format written: 2 tags non-finite Python floats (:func:`encode_nonfinite_floats`), which a
#: reader of format 1 would take for dicts; 3 holds a run's history as one tensor per series
#: (:mod:`hybridpgm.train.checkpoint_history`), which a reader of format 2 would take for lists of tensors; 4 holds
#: Python's RNG state as a tensor (:mod:`hybridpgm.train.checkpoint_rng`), which a reader of format 3 would give
#: ``random.setstate`` as tensors; formats 1 (raw non-finite floats), 2 (the history as lists) and 3 (Python's RNG
#: state as a tuple of ints) are still read
FORMAT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)

#: the key of the one-entry dict that stands for a non-finite Python float in a checkpoint
FLOAT_TAG = "__hybridpgm_float__"
_DECODED = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _rebuilt(container: Any, changed: dict[Any, Any]) -> Any:
    """``container`` with the entries ``changed`` replaced, of the same type (a copy; an ``OrderedDict``
    state_dict keeps its ``_metadata``, a named tuple its fields)."""
    if isinstance(container, dict):
        out = copy.copy(container)
        out.update(changed)
        return out
    items = [changed.get(index, value) for index, value in enumerate(container)]
    if isinstance(container, list):
        return items
    return type(container)(*items) if hasattr(container, "_fields") else type(container)(items)


def _mapped(state: Any, leaf, done: dict[int, Any] | None = None) -> Any:
    """``state`` with ``leaf(value)`` (``None``: unchanged) put for its non-container values; the containers
    on no changed path are the very same objects.  A container reached by several paths is mapped once
    (``done``: its id -> its result), and its result shared as the container was: a file whose lists share one
    list ``d`` levels deep has ``2**d`` paths but only ``d`` containers."""
    replaced = leaf(state)
    if replaced is not None:
        return replaced
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return state
    done = {} if done is None else done
    if id(state) in done:
        return done[id(state)]
    changed = {}
    for key, value in items:
        new = _mapped(value, leaf, done)
        if new is not value:
            changed[key] = new
    done[id(state)] = result = _rebuilt(state, changed) if changed else state
    return result


def _encoded(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    return None


def _decoded(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and value.get(FLOAT_TAG) in _DECODED:
        return _DECODED[value[FLOAT_TAG]]
    return None


def encode_nonfinite_floats(state: Any) -> Any:
    """``state`` with each non-finite Python float (outside tensors) replaced by ``{FLOAT_TAG: "inf"}``,
    ``"-inf"`` or ``"nan"`` (a copy of the containers on the way; ``state`` is not changed)."""
    return _mapped(state, _encoded)


def decode_nonfinite_floats(state: Any) -> Any:
    """The inverse of :func:`encode_nonfinite_floats`."""
    return _mapped(state, _decoded)


#: the scalar types ``torch.load(weights_only=True)`` reads back: exactly these (a subclass is pickled with its
#: class, which that loading refuses), checked against :func:`torch._weights_only_unpickler._get_allowed_globals`
PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes, bytearray)
_TORCH_VALUES = (torch.Size, torch.device, torch.dtype)
_PLAIN_DICTS = (dict, collections.OrderedDict, collections.Counter)
#: what :func:`plain_scalar` gives for a value that is no plain scalar
NOT_PLAIN = object()


def plain_scalar(value: Any) -> Any:
    """``value`` as a builtin scalar of :data:`PLAIN_SCALARS`, or :data:`NOT_PLAIN`.

    A NumPy scalar or 0-d array gives its ``.item()`` (``np.float64(0.1)`` -> ``0.1``, ``np.str_("a")`` ->
    ``"a"``), a subclass of ``bool``/``int``/``float``/``complex``/``str``/``bytes`` (an ``IntEnum``) the builtin
    value; a value of another type (a ``Path``, an ``Enum``, a ``datetime64``) is :data:`NOT_PLAIN`.
    """
    if type(value) in PLAIN_SCALARS:
        return value
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        item = value.item()
        return item if type(item) in PLAIN_SCALARS else NOT_PLAIN
    for base in (int, float, complex, bytes):  # bool cannot be subclassed; an IntEnum is an int
        if isinstance(value, base):
            return base(value)
    if isinstance(value, str):
        return str.__str__(value)  # its characters (str() of a ``class E(str, Enum)`` member is ``"E.A"``)
    return NOT_PLAIN


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a dense copy of it if it is a view repeating its elements (a stride of 0, as ``expand``
    gives: its elements need more bytes than its storage holds), which
    :func:`~hybridpgm.train.torch_load.read_torch_file` refuses to read back.  Metadata only, no device sync."""
    if tensor.layout != torch.strided or tensor.is_meta:
        return tensor
    if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
        return tensor.contiguous()
    return tensor


def _plain(value: Any, where: str, refused: list[str]) -> Any:
    if isinstance(value, torch.Tensor):
        return _dense(value)
    if type(value) in _TORCH_VALUES:
        return value
    if type(value) in _PLAIN_DICTS:
        pairs = [(_plain(k, f"{where}<key {k!r}>", refused), _plain(v, f"{where}[{k!r}]", refused))
                 for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items())):
            return value
        out = copy.copy(value)  # same type; a state_dict keeps its ``_metadata``
        out.clear()
        for k, v in pairs:  # item by item: Counter.update(pairs) would count the pairs themselves
            out[k] = v
        return out
    if type(value) in (list, tuple, set):
        items = [_plain(v, f"{where}[{i}]", refused) for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items)
    scalar = plain_scalar(value)
    if scalar is NOT_PLAIN:
        refused.append(f"{where or '<state>'} (a {type_name(value)})")
        return value
    return scalar


def plain_data(state: Any, where: str = "") -> tuple[Any, list[str]]:
    """``state`` with its scalars as :func:`plain_scalar` gives them (a copy of the containers on a changed
    path; tensors are kept as they are, but a view repeating its elements, such as an expanded buffer, becomes a
    dense copy of the same values), and the places (``where`` followed by ``[key]``/``[index]``) of the
    values ``torch.load(weights_only=True)`` could not read back: those of other types, and containers other than
    ``list``, ``tuple``, ``set``, ``dict``, ``OrderedDict`` and ``Counter`` (a named tuple, a ``defaultdict``).
    """
    refused: list[str] = []
    return _plain(state, where, refused), refused


def unreadable_reason(refused: list[str]) -> str:
    """The message part naming the ``refused`` places of :func:`plain_data`."""
    return (f"{_shown(refused)} cannot be read back by torch.load(weights_only=True), which takes tensors and plain "
            "data only (None, bool, int, float, complex, str, bytes, and lists, tuples, sets and dicts of them; "
            "NumPy scalars are stored as Python numbers): give such values as plain data (str(path), enum.value, "
            "array.tolist())")


def nonfinite_entries(state: Any, prefix: str = "", infinite_ok: frozenset[str] = frozenset(), *,
                      nan_only: bool = False, checked: Mapping[str, torch.Tensor] | None = None) -> list[str]:
    """Paths (``['module']['fc.weight']``) of the floating-point tensors in a
    nested ``state`` that hold NaN, or infinity where their path is not in
    ``infinite_ok`` (constant buffers that are infinite by design, such as
    GPyTorch's unbounded constraint limits).  A container reached by several paths is looked into once, by the
    first (a crafted file whose lists share one list ``d`` levels deep has ``2**d`` paths).

    Each tensor is summed first (:func:`~hybridpgm.train.chunked_finite.finite_sums`: one sum per tensor, one host
    read): a finite sum proves it finite, and only a tensor whose sum is not is scanned exactly, a chunk at a time
    (:func:`~hybridpgm.train.chunked_finite.all_finite`, :func:`~hybridpgm.train.chunked_finite.any_nan`), so the
    check's temporaries do not grow with the tensor and finite entries whose sum overflowed are not reported.

    :param nan_only: report NaN only (infinity allowed everywhere).
    :param checked: tensors already known finite, by path (:func:`parameter_paths`: the parameters ``fit`` checks
        before each write); the tensor at such a path is not looked at again if it is a view of the same memory
        (data pointer, dtype, shape and strides), as a ``state_dict`` entry is of its parameter.
    """
    found: list[tuple[str, torch.Tensor]] = []  # (path, tensor) of each floating-point tensor, in order
    _floating(state, prefix, found, set())
    checked = checked or {}
    found = [(path, t) for path, t in found if not _same_view(t, checked.get(path))]
    return [path or "<tensor>" for (path, t), ok in zip(found, finite_sums([t for _, t in found]))
            if not ok and (any_nan(t) if nan_only or path in infinite_ok else not all_finite(t))]


def _same_view(t: torch.Tensor, other: torch.Tensor | None) -> bool:
    """Whether ``other`` is ``t``'s very entries: a strided view of the same memory (metadata only, no sync)."""
    return (other is not None and t.layout == other.layout == torch.strided and t.device == other.device
            and t.dtype == other.dtype and t.shape == other.shape and t.stride() == other.stride()
            and t.data_ptr() == other.data_ptr())


def _floating(state: Any, prefix: str, found: list[tuple[str, torch.Tensor]], seen: set[int]) -> None:
    """Append to ``found`` each floating-point or complex tensor of ``state`` with its path, depth first (a
    container reached by several paths is looked into once, by the first)."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            found.append((prefix, state))
        return
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return
    if id(state) in seen:
        return
    seen.add(id(state))
    for key, value in items:
        _floating(value, f"{prefix}[{key!r}]", found, seen)


def _shown(entries: list[str]) -> str:
    """At most five places, as written (:func:`~hybridpgm.checks.shown_items`)."""
    return shown_items(entries, 5, quote=str)


def check_finite_checkpoint(path: str | os.PathLike, state: dict[str, Any], *,
                            infinite_ok: frozenset[str] = frozenset(), nan_only: bool = False) -> None:
    """Refuse a checkpoint read back from ``path`` that holds what :func:`save_checkpoint` never writes: a
    NaN anywhere, or an infinity outside ``infinite_ok`` (the module's buffers, see :func:`buffer_paths`).

    :param nan_only: check for NaN only (when the module, hence its buffers, is not known).
    :raises CheckpointError: naming the file and the non-finite entries (module, optimizer or other state).
    """
    bad = nonfinite_entries(state, infinite_ok=infinite_ok, nan_only=nan_only)
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite values in {_shown(bad)}; resuming it "
                              "would train from a broken state (hybridpgm never writes such a checkpoint, so the "
                              "file was changed or damaged): resume from an earlier copy, or pass overwrite=True "
                              "(CLI: --overwrite) to start afresh")


def buffer_paths(module: torch.nn.Module, key: str = "module") -> frozenset[str]:
    """The :func:`nonfinite_entries` paths of ``module``'s buffers inside ``state[key]``:
    they may hold infinity (a constraint's bound), never NaN; parameters may hold neither."""
    return frozenset(f"[{key!r}][{name!r}]" for name, _ in module.named_buffers(remove_duplicate=False))


def parameter_paths(module: torch.nn.Module, key: str = "module") -> dict[str, torch.Tensor]:
    """The :func:`nonfinite_entries` paths of ``module``'s parameters inside ``state[key]``, each with the
    parameter (detached): what :func:`~hybridpgm.train.finite_checks.check_finite_parameters` has checked, for
    :func:`save_checkpoint`'s ``checked``."""
    return {f"[{key!r}][{name!r}]": p.detach() for name, p in module.named_parameters(remove_duplicate=False)}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *,
                    infinite_ok: frozenset[str] = frozenset(), checked: Mapping[str, torch.Tensor] | None = None
                    ) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), its non-finite Python floats
    (outside tensors) in tagged form (:func:`encode_nonfinite_floats`) and its other scalars as the builtins
    ``weights_only`` loading reads back (:func:`plain_data`: a NumPy ``float64`` as a ``float``).

    :param path: the checkpoint file (a str or ``os.PathLike``).
    :param state: the checkpoint's entries, by name.
    :param infinite_ok: paths (see :func:`nonfinite_entries`, e.g. from
        :func:`buffer_paths`) that may hold infinity; NaN is refused everywhere.
    :param checked: tensors the caller has just checked finite, by path (:func:`parameter_paths`), not checked
        again where ``state`` holds them (see :func:`nonfinite_entries`).
    :returns: ``path`` as a :class:`~pathlib.Path`.

    :raises CheckpointError: ``state`` holds a non-finite tensor or a value ``torch.load(weights_only=True)``
        could not read back (a ``Path``, an ``Enum``, a NumPy array: naming its place, such as
        ``callbacks[0]['state']['x']``; nothing is written), ``path`` is not a str or ``os.PathLike``
        (:func:`~hybridpgm.paths.file_path`), ``path`` exists and is not a regular file (a directory, a
        symbolic link, a device node, a FIFO), or the file system refused the
        write (:func:`write_atomically`); the previous checkpoint at ``path`` is kept.
    """
    path = file_path(path, "checkpoint", CheckpointError)
    bad = nonfinite_entries(state, infinite_ok=infinite_ok, checked=checked)
    if bad:
        raise CheckpointError(f"refusing to write checkpoint {str(path)!r}: {_shown(bad)} hold(s) NaN or infinity; "
                              "the previous checkpoint is kept")
    converted = {key: plain_data(value, str(key)) for key, value in state.items()}
    state = {key: value for key, (value, _) in converted.items()}
    refused = [where for _, places in converted.values() for where in places]
    if refused:
        raise CheckpointError(f"refusing to write checkpoint {str(path)!r}: {unreadable_reason(refused)}; nothing "
                              "is written and the previous checkpoint is kept")
    # non-finite Python floats (a scheduler's infinite ``best``, a skipped step's NaN loss) go in tagged form
    return write_atomically(path, encode_nonfinite_floats({"format_version": FORMAT_VERSION, **state}), "checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, its tagged non-finite floats decoded
    (:func:`decode_nonfinite_floats`) and a history of tensors given as lists
    (:func:`~hybridpgm.train.checkpoint_history.unpacked_history`: the same values, bit for bit).

    :param path: the checkpoint file (a str or ``os.PathLike``).
    :param map_location: where tensors are loaded, as for :func:`torch.load` (default ``"cpu"``).
    :returns: the checkpoint's entries, by name.
    :raises CheckpointError: the file is missing (or a directory, a FIFO ...), empty, truncated, not a
        checkpoint, of an unknown format version, holds NaN (:func:`check_finite_checkpoint`; whether an
        infinity is allowed depends on the module, which ``fit`` checks when it resumes), nests deeper than
        Python's recursion limit allows (or contains itself), or its history of tensors lacks an entry or holds
        one of another dtype or shape (naming it); see :func:`~hybridpgm.train.torch_load.read_torch_file` for
        the reasons a file cannot be read at all.
    """
    path = file_path(path, "checkpoint", CheckpointError)
    state = read_torch_file(path, "checkpoint", map_location)
    if isinstance(state, dict) and state.get("format") == "hybridpgm-model":  # serialization.FORMAT
        raise CheckpointError(f"{str(path)!r} is a model file written by hybridpgm.save, not a training checkpoint; "
                              f"read it with hybridpgm.load")
    if not isinstance(state, dict) or state.get("format_version") not in _READABLE_VERSIONS or "format" in state:
        raise CheckpointError(f"{str(path)!r} is not a hybridpgm checkpoint of format "
                              f"{', '.join(map(str, _READABLE_VERSIONS[:-1]))} or {_READABLE_VERSIONS[-1]}")
    try:  # these walks recurse: a crafted file may nest (or refer to itself) deeper than Python's stack allows
        check_finite_checkpoint(path, state, nan_only=True)
        state = decode_nonfinite_floats(state)
    except RecursionError:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: its entries nest deeper than Python's recursion "
                              f"limit ({sys.getrecursionlimit()}) allows, or contain themselves; save_checkpoint never "
                              "writes such a checkpoint (a crafted or damaged file)") from None
    if is_packed_history(state.get("history")):
        state["history"] = unpacked_history(state["history"], path)
    return state
