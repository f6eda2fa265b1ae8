"""Atomic file writes: a temporary file beside the target, flushed to disk and renamed over it.

A write that fails (no space, no permission, a read-only file system) raises
:class:`~hybridpgm.errors.CheckpointError` naming the file and the operating
system's reason (``ENOSPC`` ...; a path that lies under a file rather than a
folder names that file), removes its temporary file and keeps the previous
file, if there was one.  :func:`check_writable` makes the same test up front
(``fit`` calls it before its first step).

The temporary is hidden and named after the target and the process writing it
(``.NAME.HOST-PID.XXXXXXXX.tmp``: ``HOST`` a hash of the host name, ``PID`` the
process id, ``XXXXXXXX`` unique).  A write first removes the temporaries in its
folder that killed writes left (:mod:`hybridpgm.train.stale_temporaries`),
unless the folder is as this process's last write there left it: those of a
process of this host that has ended, or of this process's own id while no
other write of this process is under way in the folder (a killed process whose
id it got again: a restarted container's PID 1).  A live process's (another
writer still writing), another host's, or one that cannot be removed is left
where it is: it is not in the way, since each write makes one of its own name.
One named without a writer (hybridpgm before writers were named) is removed
only by ``fit``, from its checkpoint's folder when it starts, as before.
(Processes of another PID namespace under the same host name are not told
apart from this host's: a container sharing the folder needs a host name of
its own.)

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
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.paths import file_path
from hybridpgm.train.stale_temporaries import (_temporary_prefix, remember_folder, remove_stale_temporaries,
                                               stale_removed_before_write, writing_in)

__all__ = ["check_replaceable", "check_writable", "file_kind", "make_writable_folder", "os_reason",
           "remove_stale_temporaries", "sync_folder", "write_atomically", "write_error", "write_text_atomically"]

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


def _in_the_way(path: Path) -> tuple[Path, str] | None:
    """The nearest existing path above ``path`` if it is not a folder (a file where a folder should be), with
    what it is; ``None`` if it is a folder (a link to one included) or cannot be looked at."""
    for parent in path.parents:
        try:
            mode = os.lstat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # absent, or under the non-folder found further up
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            try:
                mode = os.stat(parent).st_mode
            except OSError:
                return parent, "a symbolic link that leads to no folder"
        if stat.S_ISDIR(mode):
            return None
        return parent, "a file" if stat.S_ISREG(mode) else file_kind(mode)
    return None


def write_error(path: Path, what: str, error: OSError) -> CheckpointError:
    """The :class:`~hybridpgm.errors.CheckpointError` for a write of the ``what`` ``path`` that the OS refused
    with ``error`` (the one message of :func:`write_atomically` and :func:`check_writable`): it names a file found
    where a folder of ``path`` should be (``mkdir`` would say only "File exists"), else the OS reason, and says
    the previous file is kept only if there is one."""
    blocked = _in_the_way(path)
    if blocked is not None:
        return CheckpointError(f"cannot write {what} {str(path)!r}: it lies under {str(blocked[0])!r}, which is "
                               f"{blocked[1]}, not a folder; pass a path in a folder")
    kept = f"; the previous {what} is kept" if os.path.isfile(path) else ""
    return CheckpointError(f"cannot write {what} {str(path)!r}: {os_reason(error)}{kept}")


def make_writable_folder(folder: str | os.PathLike, prefix: str = ".hybridpgm-write-test-", *,
                         create: bool = True) -> Path:
    """Check that a file can be written in ``folder``: a temporary file (``prefix``, ``.tmp``) is created there and
    removed at once.  With ``create``, ``folder`` and its parents are created first; without, nothing is
    created, and the nearest existing folder among ``folder`` and its parents is tested (creating the rest there
    needs the same permission).  Returns the folder tested.

    :raises OSError: the folder cannot be created, or no file can be created in it (the OS's error).
    """
    folder = Path(folder)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = next((f for f in (folder, *folder.parents) if os.path.lexists(f)), folder)
    with writing_in(folder):  # a probe named as a write's is not stale while it exists
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        try:
            os.close(handle)
        finally:
            os.unlink(name)
    return folder


def check_writable(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """Check, before the work whose result is to be written to ``path``, that :func:`write_atomically` can write
    it: a temporary file named as its own is created and removed at once in ``path``'s folder, or in the nearest
    existing folder above it (:func:`make_writable_folder` without ``create``: nothing is left behind).  A full
    disk is not foreseen.

    :param what: the kind of file, as messages name it.
    :raises CheckpointError: ``path`` is not a str or ``os.PathLike`` (:func:`~hybridpgm.paths.file_path`), or no
        file can be written there (:func:`write_error`: the file found where a folder should be, or the OS reason).
    """
    path = file_path(path, what, CheckpointError)
    try:
        make_writable_folder(path.parent, _temporary_prefix(path), create=False)
    except OSError as error:
        raise write_error(path, what, error) from error
    return path


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


#: what a file system that cannot fsync a folder answers (some FUSE, CIFS and network file systems)
_CANNOT_SYNC_FOLDER = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES,
                                 errno.EPERM, errno.EISDIR})


def sync_folder(folder: str | os.PathLike) -> None:
    """``fsync`` the folder ``folder``, so that a rename into it is on the disk: the file's own ``fsync`` keeps
    its bytes, not the folder entry that names it, so after a node crash or a power loss (not a killed
    process, which the page cache survives) the previous file could come back.  POSIX only (``O_DIRECTORY``);
    on Windows, which cannot open a folder, nothing is done (NTFS journals the rename).  A file system that
    cannot sync a folder (``EINVAL``, ``ENOTSUP`` ...) is left as it is.  Its cost is a wait for the disk,
    3.9 ms (median) per write on a virtual machine's ext4, where the file's own write took 8-10 ms: small
    beside a step only with ``checkpoint_every`` well above 1 (see docs/training.md).

    :raises OSError: the folder's ``fsync`` failed for another reason (``EIO``: the disk lost the write).
    """
    directory = getattr(os, "O_DIRECTORY", None)
    if directory is None:
        return
    try:
        handle = os.open(folder, os.O_RDONLY | directory)
    except OSError as error:
        if error.errno in _CANNOT_SYNC_FOLDER:
            return
        raise
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in _CANNOT_SYNC_FOLDER:
            raise
    finally:
        os.close(handle)


def write_atomically(path: str | os.PathLike, payload: Any, what: str,
                     save: Callable[[Any, BinaryIO], None] = torch.save) -> Path:
    """``save(payload, file)`` (``torch.save`` by default) to ``path`` through a temporary file beside it, fsync,
    rename and fsync of the folder (:func:`sync_folder`): a crash or a full disk leaves the previous file intact,
    and once this returns a node crash keeps the new one.  The file gets the permissions of the one
    it replaces, or those ``open()`` gives a new file (``0o666`` less the umask).  The temporaries of ``path``
    that killed writes left are removed first, with those of the folder's other targets
    (:func:`~hybridpgm.train.stale_temporaries.stale_removed_before_write`: only those whose writer, a process of
    this host, has ended; the folder is listed only if its modification time is not the one this process's last
    write there left, so that repeated writes into a large folder do not list it each time).

    :param what: the kind of file, as messages name it (``"checkpoint"``, ``"model file"``).
    :param save: writes ``payload`` to a binary file object (:func:`write_text_atomically` writes text).
    :raises CheckpointError: ``path`` is not a str or ``os.PathLike`` or ends with a separator
        (:func:`~hybridpgm.paths.file_path`; ``~`` is expanded), exists and is not a regular file (a directory,
        a symbolic link, a device node, a FIFO: :func:`check_replaceable`), or the file system refused the write
        (:func:`write_error`: the message names the file and the OS reason, or the file found where a folder
        should be; the temporary file is removed).
    """
    path = file_path(path, what, CheckpointError)
    check_replaceable(path, what)
    tmp_name = None
    writer = None
    handled = sys.exc_info()[1]  # an exception the caller is handling (a save in an except block): not ours
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with writing_in(path.parent) as key:  # counted before the listing: no thread takes ours for stale
            stale_removed_before_write(path.parent, key)  # what killed writes left (their writers have ended)
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
            sync_folder(path.parent)  # the rename itself, so that a node crash keeps the new file
            remember_folder(path.parent, key)  # as our own write left it
    except (OSError, RuntimeError) as error:
        interrupt = writer.interrupt if writer is not None else None
        interrupt = interrupt or _interrupt_behind(error, handled)  # one that landed before write's own try
        if interrupt is not None:  # torch's RuntimeError hid the user's Ctrl-C
            raise interrupt from None
        os_error = error if isinstance(error, OSError) else (writer.error if writer is not None else None)
        if os_error is None:
            raise
        raise write_error(path, what, os_error) from os_error
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def write_text_atomically(path: str | os.PathLike, text: str, what: str) -> Path:
    """:func:`write_atomically` for ``text``, encoded as UTF-8: a reader, a second writer or a run stopped
    mid-write never finds a half-written file, and only a regular file is replaced.

    :raises CheckpointError: as :func:`write_atomically`."""
    return write_atomically(path, text.encode("utf-8"), what, save=lambda data, file: file.write(data))
