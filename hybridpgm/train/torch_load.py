"""Reading a file that ``torch.save`` wrote, with ``weights_only=True``, and one clear reason when it fails.

``torch.load`` does not check the CRC-32 that a zip archive stores for each member, so a damaged file could
load as damaged tensors: :func:`read_torch_file` checks every member first.  It also refuses what would let a
small file stand for gigabytes in memory: a compressed member (a zip bomb; ``torch.save`` stores every member
as it is) and tensors whose elements need more bytes than their storage holds (stride-0 views) past
``max(64 MiB, 16 * file size)`` in all.  Used by
:func:`~hybridpgm.train.checkpoint.load_checkpoint` and :func:`hybridpgm.load`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from hybridpgm.errors import CheckpointError, CheckpointNotFoundError
from hybridpgm.paths import file_path
from hybridpgm.train.atomic_write import file_kind, os_reason

__all__ = ["check_readable", "read_torch_file"]


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


#: the MS-DOS "directory" bit of a zip entry's external attributes, which torch's reader (miniz) obeys
_DOS_DIRECTORY = 0x10
#: the general-purpose flag bit of an encrypted zip entry
_ENCRYPTED = 0x1


def _directory_flaw(infos: list[zipfile.ZipInfo]) -> str | None:
    """Why the central directory ``infos`` cannot be what ``torch.save`` wrote, or ``None``.

    :mod:`zipfile` and torch's reader (miniz) read some fields differently, so a member can pass the CRC-32
    check and still load wrong; ``torch.save`` never writes any of these:

    * an entry flagged as a directory (external attribute bit ``0x10``) or named with a trailing ``/``:
      :mod:`zipfile` reads its bytes, but torch takes it for a directory and leaves the tensor's storage
      unfilled (uninitialised memory loaded as weights);
    * two entries with one name: both pass the CRC-32 check, torch reads only one of them;
    * an encrypted entry (general-purpose flag bit 0): :mod:`zipfile` cannot check it;
    * a compressed entry (any method but ``ZIP_STORED``): torch's writer stores every member as it is (its
      ``PyTorchFileWriter`` takes no compression setting), but its reader inflates a deflated one, so a file
      of a few kilobytes could load as gigabytes of tensors (a zip bomb).
    """
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if info.external_attr & _DOS_DIRECTORY or name.endswith("/"):
            return (f"it is corrupt: its member {name!r} is marked as a directory (external attributes "
                    f"{info.external_attr:#x}), which torch.save never writes and torch.load would read as no "
                    "data (a damaged disk, download or copy?)")
        if name in seen:
            return (f"it is corrupt: it holds two members named {name!r}, which torch.save never writes; "
                    "which one torch.load reads is ambiguous")
        seen.add(name)
        if info.flag_bits & _ENCRYPTED:
            return (f"it is corrupt: its member {name!r} is marked as encrypted (zip flags {info.flag_bits:#x}), "
                    "which torch.save never writes (a damaged disk, download or copy?)")
        if info.compress_type != zipfile.ZIP_STORED:
            return (f"it was not written by torch.save: its member {name!r} is compressed (zip method "
                    f"{info.compress_type}, {info.compress_size} bytes for {info.file_size}), and torch.save stores "
                    "every member uncompressed; a compressed member can inflate far beyond the file's size "
                    "(a file repacked by a zip tool, or crafted)")
    return None


def _zip_damage(path: Path) -> str | None:
    """Why the zip archive that ``torch.save`` wrote at ``path`` is damaged, or ``None``.

    ``torch.load`` never checks the CRC-32 that the archive stores for each member, so a bit flipped in a
    tensor's bytes (a damaged disk, download or copy) loads silently as a wrong weight.  This reads every
    member once, as :meth:`zipfile.ZipFile.testzip` does, and checks each one's CRC-32, after refusing the
    entries that torch would read differently from :mod:`zipfile` (:func:`_directory_flaw`).  A file that is no
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
            flaw = _directory_flaw(archive.infolist())
            if flaw is not None:
                return flaw
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


#: what :func:`_oversized_view` looks into: the containers ``weights_only`` loading builds (and their subclasses)
_CONTAINERS = (dict, list, tuple, set, frozenset)
#: the bytes that the views repeating elements in a file may need in all, whatever its size (64 MiB) ...
MIN_REPEAT_BYTES = 64 << 20
#: ... or this many times the file's size, if more
REPEAT_FACTOR = 16


def repeat_limit(file_size: int) -> int:
    """The bytes that the views repeating elements in a file of ``file_size`` bytes may need in all:
    ``max(64 MiB, 16 * file_size)``."""
    return max(MIN_REPEAT_BYTES, REPEAT_FACTOR * file_size)


def _oversized_view(state: Any, limit: int) -> str | None:
    """Why the views in ``state`` that repeat elements stand for more than ``limit`` bytes, naming the one
    (``['history']['loss']``) that takes their sum past it, or ``None``.

    A tensor whose elements need more bytes than its storage holds is a view that repeats elements (a stride of
    0, as :meth:`torch.Tensor.expand` gives), so a file of a few kilobytes could declare a tensor of ``10**10``
    elements: any copy, comparison or ``tolist`` of it then allocates them all.  Such views are summed
    (``numel * element_size`` each, once per place that holds one) and refused past ``limit``
    (:func:`repeat_limit`: 64 MiB, or 16 times the file's size if more), so a small expanded buffer, as
    checkpoints written before hybridpgm stored such views dense hold (a mask ``torch.ones(1).expand(5)``),
    still loads as it is.  A view that stays within its storage (a slice, a transpose, tied weights) is not
    counted.  The walk is iterative (any nesting depth) and visits each container once (one shared by several
    entries is not walked again); tensors of another layout than ``torch.strided`` (sparse) are not looked into.
    """
    places: list[tuple[int, Any]] = []  # (index of the parent's place, key), for the message only
    stack: list[tuple[Any, int]] = [(state, -1)]
    seen: set[int] = set()
    total = 0
    while stack:
        value, place = stack.pop()
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided:
                continue
            try:
                stored = value.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):  # a tensor without storage of its own
                continue
            needed = value.numel() * value.element_size()
            if needed > stored:
                total += needed
                if total > limit:
                    keys = []
                    while place >= 0:
                        place, key = places[place]
                        keys.append(f"[{key!r}]")
                    where = "".join(reversed(keys)) or "<the file's object>"
                    return (f"its tensor {where} of shape {tuple(value.shape)} and strides {value.stride()} repeats "
                            f"elements: its {value.numel()} elements of {value.element_size()} bytes need {needed} "
                            f"bytes, its storage holds {stored}; with it the views repeating elements need {total} "
                            f"bytes in all, more than the {limit} such a file may stand for (64 MiB, or 16 times "
                            "its size; a crafted file: any copy of them would allocate them all)")
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (torch.Tensor, *_CONTAINERS)):
                places.append((place, key))
                stack.append((item, len(places) - 1))
    return None


def _pickled_module(name: str) -> bool:
    """Whether the global ``name`` a file names is a torch module class: one of torch's or hybridpgm's by name, or
    a subclass of :class:`torch.nn.Module` in a module already imported (nothing a file names is imported)."""
    if name.startswith(("torch.nn.", "hybridpgm.", "gpytorch.", "pyro.nn.")):
        return True
    module, _, attr = name.rpartition(".")
    cls = getattr(sys.modules.get(module), attr, None)
    return isinstance(cls, type) and issubclass(cls, torch.nn.Module)


def _load_reason(error: Exception, what: str = "file") -> str:
    """What went wrong, in a line, without torch's advice to load with ``weights_only=False`` (but for a pickled
    module, ``torch.save(model)``'s file, whose remedy that is for a trusted file)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].split())
        detail = detail.split(" Please use `torch.serialization", 1)[0].split(" Check the documentation", 1)[0]
        found = re.search(r"GLOBAL (\S+) was not an allowed global", detail)
        if found and _pickled_module(found.group(1)):
            return (f"it is a pickled {found.group(1)} (what torch.save(model) writes), not a hybridpgm {what}, and "
                    "loading with weights_only=True (tensors and plain data only) refuses it; only if you trust the "
                    "file (unpickling runs code), load it with torch.load(path, weights_only=False)" + (
                        ", then write a model file with hybridpgm.save(model, ...)" if what == "model file" else ""))
        return (f"it holds objects that loading with weights_only=True (tensors and plain data only) refuses "
                f"({detail.strip() or type(error).__name__}); it was not written by hybridpgm")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"it is corrupt ({type(error).__name__}: {first[:200]})"


#: what :func:`_mapped` gives for a file it could not read
_UNREAD = object()


def _mapped(path: Path, map_location: Any) -> Any:
    """``torch.load(path, weights_only=True, mmap=True)``, or :data:`_UNREAD` where it fails (the caller reads the
    file without mapping it, which gives the reason if it fails again)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - torch raises several types; the unmapped read says which
        return _UNREAD


def check_readable(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path` (``~`` expanded, :func:`~hybridpgm.paths.file_path`) if it is a
    regular file (through a symbolic link is fine).

    :raises CheckpointNotFoundError: it does not exist (a :class:`CheckpointError` and a
        :class:`FileNotFoundError`).
    :raises CheckpointError: it is not a str or ``os.PathLike`` (``bytes``) or ends with a separator, cannot be
        examined (a name too long, a folder on the way not searchable: the OS reason), or is a
        directory, a FIFO, a device node ... (opening a FIFO would wait for a writer forever).
    """
    path = file_path(path, what, CheckpointError)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{what} {str(path)!r} does not exist") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {os_reason(error)}") from error
    if stat.S_ISDIR(mode):
        noun = what if what.endswith("file") else f"{what} file"
        raise CheckpointError(f"{what} {str(path)!r} is a directory, not a {noun}")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{what} {str(path)!r} is {file_kind(mode)}, not a regular file")
    return path


def read_torch_file(path: str | os.PathLike, what: str, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)``, turning any failure into one clear reason.

    A zip archive (what ``torch.save`` writes) is checked first: every member is read once and its CRC-32
    compared with the one the archive stores, which ``torch.load`` does not do, so a damaged file is refused
    instead of giving damaged tensors.  A legacy non-zip torch file is read by ``torch.load`` as before.

    With ``mmap=True`` a zip archive is read with ``torch.load(..., mmap=True)``: the tensors left on the CPU are
    views of a private (copy-on-write) mapping of the file (:meth:`torch.UntypedStorage.from_file`), whose pages
    the system may drop and read again, rather than a copy of them in the process's own memory.  The caller copies
    what it keeps (:mod:`hybridpgm.serialization_state`): a later write to the file could show through such a
    view, and the mapping lives as long as one of them (truncating the file under it ends the process with
    ``SIGBUS`` on the next read of a page past its new end).  A legacy non-zip file, which ``torch.load`` cannot
    map, and a file that the mapped read fails on (a file system without ``mmap``, a damaged file) are read
    without it, which then gives the reason.

    After loading, the tensors that need more bytes than their storage holds (views repeating their elements, a
    stride of 0) are summed and refused past ``max(64 MiB, 16 * file size)`` (:func:`_oversized_view`): such
    views would let a file of a few kilobytes stand for gigabytes, while a small expanded buffer, as older
    checkpoints hold, loads as it is.

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :param map_location: the device(s) to load onto, as :func:`torch.load` takes it.
    :param mmap: map a zip archive's tensors instead of reading them into the process's memory (see above).
    :raises CheckpointError: naming the file and why it cannot be read: empty, not a torch file, truncated,
        damaged (naming the member whose CRC-32 fails, or whose zip entry torch would read differently: one
        marked as a directory or encrypted, or a name given twice), a compressed member (torch.save stores
        them all uncompressed), holding objects that ``weights_only`` loading refuses, views repeating their
        elements that need more than ``max(64 MiB, 16 * file size)`` bytes in all (naming the place and shape of
        the one that passes the bound), or the OS reason.
    """
    path = check_readable(path, what)
    try:
        damage = _zip_damage(path)
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {os_reason(error)}") from error
    if damage is not None:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {damage}")
    try:
        state = _mapped(path, map_location) if mmap and _has_zip_signature(path) else _UNREAD
        if state is _UNREAD:
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types for an unreadable file
        try:
            size = os.path.getsize(path)
            if size == 0:
                reason = f"the file is empty (0 bytes), so it holds no {what} (a copy that did not finish?)"
            elif isinstance(error, OSError):
                reason = os_reason(error)
            elif "zip archive" in str(error) or not zipfile.is_zipfile(path):
                reason = _zip_reason(path, size)
            else:
                reason = _load_reason(error, what)
        except OSError as os_error:
            reason = os_reason(os_error)
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {reason}") from error
    try:
        limit = repeat_limit(os.path.getsize(path))
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {os_reason(error)}") from error
    oversized = _oversized_view(state, limit)
    if oversized is not None:
        raise CheckpointError(f"cannot read {what} {str(path)!r}: {oversized}")
    return state
