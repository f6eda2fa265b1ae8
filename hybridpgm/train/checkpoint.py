"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds the module's ``state_dict``, each player's optimizer and
scheduler state, the objective's extra state, every RNG state (torch CPU and
CUDA, Python, NumPy), the step, the data seed and the history, so a resumed
run continues bit for bit where it stopped (on CPU).  It is written to a
temporary file in the same folder, flushed to disk, and renamed over the
target, so a run killed mid-write leaves the previous checkpoint intact.

A write that fails (no space, no permission, a read-only file system) raises
:class:`~hybridpgm.errors.CheckpointError` naming the file and the operating
system's reason (``ENOSPC`` ...), removes its temporary file and keeps the
previous checkpoint; temporaries left by a run killed mid-write are removed by
:func:`remove_stale_temporaries` when the next run starts.  A state holding a
non-finite floating-point tensor is never written.
"""

from __future__ import annotations

import errno
import glob
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridpgm.errors import CheckpointError

__all__ = ["buffer_paths", "load_checkpoint", "nonfinite_entries", "remove_stale_temporaries", "rng_state",
           "save_checkpoint", "set_rng_state"]

FORMAT_VERSION = 1


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
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def nonfinite_entries(state: Any, prefix: str = "", infinite_ok: frozenset[str] = frozenset()) -> list[str]:
    """Paths (``['module']['fc.weight']``) of the floating-point tensors in a
    nested ``state`` that hold NaN, or infinity where their path is not in
    ``infinite_ok`` (constant buffers that are infinite by design, such as
    GPyTorch's unbounded constraint limits)."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            if prefix in infinite_ok:
                return [prefix] if bool(torch.isnan(state).any()) else []
            return [] if bool(torch.isfinite(state).all()) else [prefix or "<tensor>"]
        return []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [bad for key, value in items for bad in nonfinite_entries(value, f"{prefix}[{key!r}]", infinite_ok)]


def buffer_paths(module: torch.nn.Module, key: str = "module") -> frozenset[str]:
    """The :func:`nonfinite_entries` paths of ``module``'s buffers inside ``state[key]``:
    they may hold infinity (a constraint's bound), never NaN; parameters may hold neither."""
    return frozenset(f"[{key!r}][{name!r}]" for name, _ in module.named_buffers(remove_duplicate=False))


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed write of the checkpoint ``path`` left
    behind (``.NAME.XXXXXXXX.tmp`` beside it).  Returns the removed paths."""
    path = Path(path)
    pattern = os.path.join(glob.escape(str(path.parent)), glob.escape(_temporary_prefix(path)) + "*.tmp")
    removed = []
    for stale in glob.glob(pattern):
        try:
            os.unlink(stale)
            removed.append(Path(stale))
        except FileNotFoundError:
            pass
    return removed


class _RecordingWriter:
    """A binary file that remembers the first :class:`OSError` of a write, which
    torch's zip writer turns into a ``RuntimeError`` naming neither file nor reason."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self):
        return self.file.flush()


def _os_reason(error: OSError) -> str:
    code = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    reason = error.strerror or str(error)
    return f"{reason} ({code})" if code else reason


def write_atomically(path: str | os.PathLike, payload: Any, what: str) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file beside it, fsync and rename: a crash or a
    full disk leaves the previous file intact.

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :raises CheckpointError: ``path`` is a directory, or the file system refused the write (the message names
        the file and the OS reason; the temporary file is removed).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot write {what} {str(path)!r}: it is a directory; pass the path of a file")
    tmp_name = None
    writer = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as tmp:
            writer = _RecordingWriter(tmp)
            torch.save(payload, writer)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except (OSError, RuntimeError) as error:
        os_error = error if isinstance(error, OSError) else (writer.error if writer is not None else None)
        if os_error is None:
            raise
        raise CheckpointError(f"cannot write {what} {str(path)!r}: {_os_reason(os_error)}; "
                              f"the previous {what} is kept") from os_error
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *,
                    infinite_ok: frozenset[str] = frozenset()) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    :param infinite_ok: paths (see :func:`nonfinite_entries`, e.g. from
        :func:`buffer_paths`) that may hold infinity; NaN is refused everywhere.

    :raises CheckpointError: ``state`` holds a non-finite tensor (nothing is
        written), ``path`` is a directory, or the file system refused the write
        (:func:`write_atomically`); the previous checkpoint at ``path`` is kept.
    """
    path = Path(path)
    bad = nonfinite_entries(state, infinite_ok=infinite_ok)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"refusing to write checkpoint {str(path)!r}: {shown} hold(s) NaN or infinity; "
                              "the previous checkpoint is kept")
    return write_atomically(path, {"format_version": FORMAT_VERSION, **state}, "checkpoint")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    :raises CheckpointError: the file is missing (or a directory), truncated, not a checkpoint,
        or of an unknown format version.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt file
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {error}") from error
    if isinstance(state, dict) and state.get("format") == "hybridpgm-model":  # serialization.FORMAT
        raise CheckpointError(f"{str(path)!r} is a model file written by hybridpgm.save, not a training checkpoint; "
                              f"read it with hybridpgm.load")
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "format" in state:
        raise CheckpointError(f"{str(path)!r} is not a hybridpgm checkpoint of format {FORMAT_VERSION}")
    return state
