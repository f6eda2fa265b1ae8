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

A write that fails (no space, no permission, a read-only file system) raises
:class:`~hybridpgm.errors.CheckpointError` naming the file and the operating
system's reason (``ENOSPC`` ...), removes its temporary file and keeps the
previous checkpoint; temporaries left by a run killed mid-write are removed by
:func:`remove_stale_temporaries` when the next run starts.  A state holding a
non-finite floating-point tensor is never written, and one read back is checked
the same way (:func:`check_finite_checkpoint`).

Only a regular file is ever replaced: a path that exists as a directory, a
symbolic link, a device node, a FIFO or a socket is refused
(:func:`check_replaceable`).  A symbolic link is refused rather than followed
or replaced: replacing it would leave its target stale, and writing through it
would put the checkpoint somewhere the path does not say.  The written file
gets the permissions a plain ``open()`` would give it (``0o666`` less the
umask), or keeps those of the file it replaces.
"""

from __future__ import annotations

import errno
import glob
import os
import random
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridpgm.errors import CheckpointError

__all__ = ["buffer_paths", "check_finite_checkpoint", "check_replaceable", "load_checkpoint", "nonfinite_entries",
           "read_torch_file", "remove_stale_temporaries", "rng_state", "save_checkpoint", "set_rng_state"]

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
            if not stat.S_ISREG(os.lstat(stale).st_mode):
                continue  # not a file a write of ours left: never remove it
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


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def check_replaceable(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a ``path`` that exists and is not a regular file (a directory, a symbolic link, a device node,
    a FIFO, a socket): hybridpgm writes a file beside it and renames it over ``path``, which would replace the
    node itself.  A symbolic link is refused too, even to a regular file: replacing the link would leave its
    target stale, and writing through it would put the file where ``path`` does not say.

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :raises CheckpointError: naming the path and what it is.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # absent (or not reachable: the write reports the OS reason)
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"cannot write {what} {str(path)!r}: it is a directory; pass the path of a file")
    if stat.S_ISLNK(mode):
        try:
            target = f" to {os.readlink(path)!r}"
        except OSError:
            target = ""
        raise CheckpointError(f"cannot write {what} {str(path)!r}: it is a symbolic link{target}; hybridpgm "
                              "replaces only regular files, so pass the link's target or remove the link")
    raise CheckpointError(f"cannot write {what} {str(path)!r}: it is {_kind(mode)}, not a regular file; "
                          "hybridpgm replaces only regular files, so pass the path of a file")


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The permissions of the file written at ``path``: those of the regular file it replaces, else what
    ``open()`` gives a new file (``0o666`` less the umask), not ``mkstemp``'s ``0o600``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def write_atomically(path: str | os.PathLike, payload: Any, what: str) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file beside it, fsync and rename: a crash or a
    full disk leaves the previous file intact.  The file gets the permissions of the one it replaces, or
    those ``open()`` gives a new file (``0o666`` less the umask).

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :raises CheckpointError: ``path`` exists and is not a regular file (a directory, a symbolic link, a
        device node, a FIFO: :func:`check_replaceable`), or the file system refused the write (the message
        names the file and the OS reason; the temporary file is removed).
    """
    path = Path(path)
    check_replaceable(path, what)
    tmp_name = None
    writer = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _new_file_mode(path)
        handle, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
        if hasattr(os, "fchmod"):
            os.fchmod(handle, mode)
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
        written), ``path`` exists and is not a regular file (a directory, a
        symbolic link, a device node, a FIFO), or the file system refused the
        write (:func:`write_atomically`); the previous checkpoint at ``path`` is kept.
    """
    path = Path(path)
    bad = nonfinite_entries(state, infinite_ok=infinite_ok)
    if bad:
        raise CheckpointError(f"refusing to write checkpoint {str(path)!r}: {_shown(bad)} hold(s) NaN or infinity; "
                              "the previous checkpoint is kept")
    return write_atomically(path, {"format_version": FORMAT_VERSION, **state}, "checkpoint")


_ZIP_SIGNATURE = b"PK\x03\x04"
_CHUNK = 1 << 20
#: What :mod:`zipfile` raises for an archive whose headers or member bytes are damaged.
_ZIP_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, KeyError, IndexError,
               NotImplementedError, OverflowError, struct.error)


def _has_zip_signature(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(_ZIP_SIGNATURE)) == _ZIP_SIGNATURE


def _zip_reason(path: Path, size: int) -> str:
    if not _has_zip_signature(path):
        return (f"it is not a file written by torch.save (its {size} bytes do not start with the zip signature "
                "torch.save writes)")
    return (f"it is truncated or corrupt: a zip archive as torch.save writes, but its {size} bytes hold no "
            "complete archive (a copy or a write that stopped early?)")


def _is_damage(error: Exception) -> bool:
    """Whether ``error``, raised by :mod:`zipfile` while reading an archive, means the bytes are damaged (a
    seek to an offset a damaged header gives fails with ``EINVAL``) rather than that the file cannot be read."""
    return isinstance(error, _ZIP_DAMAGE) or (isinstance(error, OSError) and error.errno == errno.EINVAL)


def _zip_damage(path: Path) -> str | None:
    """Why the zip archive that ``torch.save`` wrote at ``path`` is damaged, or ``None``.

    ``torch.load`` never checks the CRC-32 that the archive stores for each member, so a bit flipped in a
    tensor's bytes (a damaged disk, download or copy) loads silently as a wrong weight.  This reads every
    member once, as :meth:`zipfile.ZipFile.testzip` does, and checks each one's CRC-32.  A file that is no
    zip archive (empty, a legacy non-zip torch file, or no torch file at all) gives ``None``: ``torch.load``
    then says what it is.

    :raises OSError: the file cannot be read (not a damaged archive).
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(len(_ZIP_SIGNATURE))
        if head != _ZIP_SIGNATURE:
            if len(head) == len(_ZIP_SIGNATURE) and zipfile.is_zipfile(file):  # a legacy file holds no zip
                return (f"it is corrupt: its {size} bytes end as a zip archive as torch.save writes, but do not "
                        f"start with the zip signature (its first bytes {head!r} are damaged)")
            return None
        file.seek(0)
        try:
            archive = zipfile.ZipFile(file)
        except Exception as error:  # noqa: BLE001 - zipfile raises several types for a damaged directory
            if not _is_damage(error):
                raise
            return _zip_reason(path, size)
        with archive:
            for info in archive.infolist():
                try:
                    with archive.open(info) as member:
                        while member.read(_CHUNK):
                            pass
                except Exception as error:  # noqa: BLE001 - as above, for a damaged member
                    if not _is_damage(error):
                        raise
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    return (f"it is corrupt: its member {info.filename!r} is damaged ({type(error).__name__}: "
                            f"{first[:200]}); its bytes changed after torch.save wrote them (a damaged disk, "
                            "download or copy?)")
    return None


def _load_reason(error: Exception) -> str:
    """What went wrong, in a line, without torch's advice to load with ``weights_only=False``."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].split())
        detail = detail.split(" Please use `torch.serialization", 1)[0].split(" Check the documentation", 1)[0]
        return (f"it holds objects that loading with weights_only=True (tensors and plain data only) refuses "
                f"({detail.strip() or type(error).__name__}); it was not written by hybridpgm")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"it is corrupt ({type(error).__name__}: {first[:200]})"


def check_readable(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a regular file (through a symbolic link is fine).

    :raises CheckpointError: it does not exist, or is a directory, a FIFO, a device node ... (opening a
        FIFO would wait for a writer forever).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} does not exist") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {_os_reason(error)}") from error
    if stat.S_ISDIR(mode):
        noun = what if what.endswith("file") else f"{what} file"
        raise CheckpointError(f"{what} {str(path)!r} is a directory, not a {noun}")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{what} {str(path)!r} is {_kind(mode)}, not a regular file")
    return path


def read_torch_file(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, turning any failure into one clear reason.

    A zip archive (what ``torch.save`` writes) is checked first: every member is read once and its CRC-32
    compared with the one the archive stores, which ``torch.load`` does not do, so a damaged file is refused
    instead of giving damaged tensors.  A legacy non-zip torch file is read by ``torch.load`` as before.

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :raises CheckpointError: naming the file and why it cannot be read: empty, not a torch file, truncated,
        damaged (naming the member whose CRC-32 fails), holding objects that ``weights_only`` loading refuses,
        or the OS reason.
    """
    path = check_readable(path, what)
    try:
        damage = _zip_damage(path)
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {_os_reason(error)}") from error
    if damage is not None:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {damage}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for an unreadable file
        try:
            size = os.path.getsize(path)
            if size == 0:
                reason = f"the file is empty (0 bytes), so it holds no {what} (a copy that did not finish?)"
            elif isinstance(error, OSError):
                reason = _os_reason(error)
            elif "zip archive" in str(error) or not zipfile.is_zipfile(path):
                reason = _zip_reason(path, size)
            else:
                reason = _load_reason(error)
        except OSError as os_error:
            reason = _os_reason(os_error)
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {reason}") from error


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    :raises CheckpointError: the file is missing (or a directory, a FIFO ...), empty, truncated, not a
        checkpoint, of an unknown format version, or holds NaN (:func:`check_finite_checkpoint`; whether an
        infinity is allowed depends on the module, which ``fit`` checks when it resumes).
    """
    path = Path(path)
    state = read_torch_file(path, "checkpoint", map_location)
    if isinstance(state, dict) and state.get("format") == "hybridpgm-model":  # serialization.FORMAT
        raise CheckpointError(f"{str(path)!r} is a model file written by hybridpgm.save, not a training checkpoint; "
                              f"read it with hybridpgm.load")
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "format" in state:
        raise CheckpointError(f"{str(path)!r} is not a hybridpgm checkpoint of format {FORMAT_VERSION}")
    check_finite_checkpoint(path, state, nan_only=True)
    return state
