"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds the module's ``state_dict``, each player's optimizer and
scheduler state, the objective's extra state, every RNG state (torch CPU and
CUDA, Python, NumPy), the step, the data seed and the history, so a resumed
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
(:func:`check_finite_checkpoint`).

A checkpoint holds no non-finite *Python float* either: those a state may hold outside tensors (a
``ReduceLROnPlateau``'s ``best`` and ``mode_worse``, infinite before its first step; the history's NaN loss of
a step skipped under ``skip_nonfinite``) are written as the tagged dict ``{"__hybridpgm_float__": "inf"}``
(``"-inf"``, ``"nan"``; :func:`encode_nonfinite_floats`) and decoded back by :func:`load_checkpoint`, so a
raw ``torch.load(path, weights_only=True)`` of any checkpoint finds only finite numbers.
"""

from __future__ import annotations

import copy
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridpgm.errors import CheckpointError
# re-exported: the file I/O lived here, and hybridpgm.serialization and users import it from this module
from hybridpgm.train.atomic_write import check_replaceable, remove_stale_temporaries, write_atomically
from hybridpgm.train.torch_load import check_readable, read_torch_file

__all__ = ["buffer_paths", "check_finite_checkpoint", "check_readable", "check_replaceable",
           "decode_nonfinite_floats", "encode_nonfinite_floats", "load_checkpoint", "nonfinite_entries",
           "read_torch_file", "remove_stale_temporaries", "rng_state", "save_checkpoint", "set_rng_state",
           "write_atomically"]

#: the checkpoint format written: 2 tags non-finite Python floats (:func:`encode_nonfinite_floats`), which a
#: reader of format 1 would take for dicts; format 1 (raw non-finite floats) is still read
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)

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


def _mapped(state: Any, leaf) -> Any:
    """``state`` with ``leaf(value)`` (``None``: unchanged) put for its non-container values; the containers
    on no changed path are the very same objects."""
    replaced = leaf(state)
    if replaced is not None:
        return replaced
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return state
    changed = {}
    for key, value in items:
        new = _mapped(value, leaf)
        if new is not value:
            changed[key] = new
    return _rebuilt(state, changed) if changed else state


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


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (its tensors may have been mapped to another device, as
    :func:`load_checkpoint` does with ``map_location``: torch takes RNG states only as CPU byte tensors)."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def nonfinite_entries(state: Any, prefix: str = "", infinite_ok: frozenset[str] = frozenset(), *,
                      nan_only: bool = False) -> list[str]:
    """Paths (``['module']['fc.weight']``) of the floating-point tensors in a
    nested ``state`` that hold NaN, or infinity where their path is not in
    ``infinite_ok`` (constant buffers that are infinite by design, such as
    GPyTorch's unbounded constraint limits).

    :param nan_only: report NaN only (infinity allowed everywhere).
    """
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            if nan_only or prefix in infinite_ok:
                return [prefix or "<tensor>"] if bool(torch.isnan(state).any()) else []
            return [] if bool(torch.isfinite(state).all()) else [prefix or "<tensor>"]
        return []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [bad for key, value in items
            for bad in nonfinite_entries(value, f"{prefix}[{key!r}]", infinite_ok, nan_only=nan_only)]


def _shown(entries: list[str]) -> str:
    return ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *,
                    infinite_ok: frozenset[str] = frozenset()) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), its non-finite Python floats
    (outside tensors) in tagged form (:func:`encode_nonfinite_floats`).

    :param infinite_ok: paths (see :func:`nonfinite_entries`, e.g. from
        :func:`buffer_paths`) that may hold infinity; NaN is refused everywhere.

    :raises CheckpointError: ``state`` holds a non-finite tensor (nothing is
        written), ``path`` exists and is not a regular file (a directory, a
        symbolic link, a device node, a FIFO), or the file system refused the
        write (:func:`write_atomically`); the previous checkpoint at ``path`` is kept.
    """
    path = Path(path)
    bad = nonfinite_entries(state, infinite_ok=infinite_ok)
    if bad:
        raise CheckpointError(f"refusing to write checkpoint {str(path)!r}: {_shown(bad)} hold(s) NaN or infinity; "
                              "the previous checkpoint is kept")
    # non-finite Python floats (a scheduler's infinite ``best``, a skipped step's NaN loss) go in tagged form
    return write_atomically(path, encode_nonfinite_floats({"format_version": FORMAT_VERSION, **state}), "checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, its tagged non-finite floats decoded
    (:func:`decode_nonfinite_floats`).

    :raises CheckpointError: the file is missing (or a directory, a FIFO ...), empty, truncated, not a
        checkpoint, of an unknown format version, or holds NaN (:func:`check_finite_checkpoint`; whether an
        infinity is allowed depends on the module, which ``fit`` checks when it resumes).
    """
    path = Path(path)
    state = read_torch_file(path, "checkpoint", map_location)
    if isinstance(state, dict) and state.get("format") == "hybridpgm-model":  # serialization.FORMAT
        raise CheckpointError(f"{str(path)!r} is a model file written by hybridpgm.save, not a training checkpoint; "
                              f"read it with hybridpgm.load")
    if not isinstance(state, dict) or state.get("format_version") not in _READABLE_VERSIONS or "format" in state:
        raise CheckpointError(f"{str(path)!r} is not a hybridpgm checkpoint of format "
                              f"{' or '.join(map(str, _READABLE_VERSIONS))}")
    check_finite_checkpoint(path, state, nan_only=True)
    return decode_nonfinite_floats(state)
