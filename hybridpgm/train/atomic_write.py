"""Atomic file writes: a temporary file beside the target, flushed to disk and renamed over it.

A write that fails (no space, no permission, a read-only file system) raises
:class:`~hybridpgm.errors.CheckpointError` naming the file and the operating
system's reason (``ENOSPC`` ...), removes its temporary file and keeps the
previous file; temporaries left by a run killed mid-write are removed by
:func:`remove_stale_temporaries` when the next run starts.

Only a regular file is ever replaced: a path that exists as a directory, a
symbolic link, a device node, a FIFO or a socket is refused
(:func:`check_replaceable`).  A symbolic link is refused rather than followed
or replaced: replacing it would leave its target stale, and writing through it
would put the file somewhere the path does not say.  The written file
gets the permissions a plain ``open()`` would give it (``0o666`` less the
umask), or keeps those of the file it replaces.  Used by
:func:`~hybridpgm.train.checkpoint.save_checkpoint` and :func:`hybridpgm.save`; :func:`write_text_atomically` writes
text files (the CLI's reports) the same way.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.paths import file_path

__all__ = ["check_replaceable", "file_kind", "os_reason", "remove_stale_temporaries", "write_atomically",
           "write_text_atomically"]


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed write of the checkpoint ``path`` left
    behind (``.NAME.XXXXXXXX.tmp`` beside it).  Returns the removed paths.

    A temporary that cannot be removed (another user's, in a sticky folder such as ``/tmp``; a read-only
    folder) is left where it is: it is not in the way, since each write makes a temporary of its own name."""
    path = file_path(path, "checkpoint", CheckpointError)
    pattern = os.path.join(glob.escape(str(path.parent)), glob.escape(_temporary_prefix(path)) + "*.tmp")
    removed = []
    for stale in glob.glob(pattern):
        try:
            if not stat.S_ISREG(os.lstat(stale).st_mode):
                continue  # not a file a write of ours left: never remove it
            os.unlink(stale)
            removed.append(Path(stale))
        except OSError:  # gone already, or not ours to remove (EPERM, EACCES, EROFS): left as it is
            pass
    return removed


class _RecordingWriter:
    """A binary file that remembers the first :class:`OSError` of a write, which
    torch's zip writer turns into a ``RuntimeError`` naming neither file nor reason, and an interrupt (Ctrl-C's
    :class:`KeyboardInterrupt`, which arrives while torch calls :meth:`write`), which it turns into the same."""

    def __init__(self, file):
        self.file, self.error, self.interrupt = file, None, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise
        except BaseException as interrupt:  # not an Exception: KeyboardInterrupt, SystemExit
            if not isinstance(interrupt, Exception):
                self.interrupt = self.interrupt or interrupt
            raise

    def flush(self):
        return self.file.flush()


def _interrupt_behind(error: BaseException, handled: BaseException | None) -> BaseException | None:
    """The first :class:`KeyboardInterrupt` (or other non-:class:`Exception`) in the chain of ``error``'s causes
    and contexts, up to ``handled``, the exception the caller was handling when the write began (a save in an
    ``except KeyboardInterrupt:`` block whose disk is full must report the disk, not that older interrupt): what
    torch's zip writer turned into its ``RuntimeError``."""
    seen, link = set(), error.__cause__ or error.__context__
    while link is not None and link is not handled and id(link) not in seen:
        if not isinstance(link, Exception):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def os_reason(error: OSError) -> str:
    """The operating system's reason for ``error``, with its ``errno`` name: ``"No space left on device
    (ENOSPC)"``."""
    code = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    reason = error.strerror or str(error)
    return f"{reason} ({code})" if code else reason


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, as messages name it (``"a FIFO (named pipe)"``)."""
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
    raise CheckpointError(f"cannot write {what} {str(path)!r}: it is {file_kind(mode)}, not a regular file; "
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


def write_atomically(path: str | os.PathLike, payload: Any, what: str,
                     save: Callable[[Any, BinaryIO], None] = torch.save) -> Path:
    """``save(payload, file)`` (``torch.save`` by default) to ``path`` through a temporary file beside it, fsync
    and rename: a crash or a full disk leaves the previous file intact.  The file gets the permissions of the one
    it replaces, or those ``open()`` gives a new file (``0o666`` less the umask).

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :param save: writes ``payload`` to a binary file object (:func:`write_text_atomically` writes text).
    :raises CheckpointError: ``path`` is not a str or ``os.PathLike`` or ends with a separator
        (:func:`~hybridpgm.paths.file_path`; ``~`` is expanded), exists and is not a regular file (a directory,
        a symbolic link, a device node, a FIFO: :func:`check_replaceable`), or the file system refused the write
        (the message names the file and the OS reason; the temporary file is removed).
    """
    path = file_path(path, what, CheckpointError)
    check_replaceable(path, what)
    tmp_name = None
    writer = None
    handled = sys.exc_info()[1]  # an exception the caller is handling (a save in an except block): not ours
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _new_file_mode(path)
        handle, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
        try:
            tmp = os.fdopen(handle, "wb")
        except BaseException:
            os.close(handle)
            raise
        # the file object owns the descriptor from here on: an fchmod refused (EPERM on CIFS/FUSE) closes it
        with tmp:
            if hasattr(os, "fchmod"):
                os.fchmod(tmp.fileno(), mode)
            writer = _RecordingWriter(tmp)
            save(payload, writer)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except (OSError, RuntimeError) as error:
        interrupt = writer.interrupt if writer is not None else None
        interrupt = interrupt or _interrupt_behind(error, handled)  # one that landed before write's own try
        if interrupt is not None:  # torch's RuntimeError hid the user's Ctrl-C
            raise interrupt from None
        os_error = error if isinstance(error, OSError) else (writer.error if writer is not None else None)
        if os_error is None:
            raise
        raise CheckpointError(f"cannot write {what} {str(path)!r}: {os_reason(os_error)}; "
                              f"the previous {what} is kept") from os_error
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def write_text_atomically(path: str | os.PathLike, text: str, what: str) -> Path:
    """:func:`write_atomically` for ``text``, encoded as UTF-8: a reader, a second writer or a run stopped
    mid-write never finds a half-written file, and only a regular file is replaced.

    :raises CheckpointError: as :func:`write_atomically`."""
    return write_atomically(path, text.encode("utf-8"), what, save=lambda data, file: file.write(data))
