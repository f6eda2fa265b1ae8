"""The temporary files of atomic writes, named after their writer, and the removal of those killed writes left.

:func:`~hybridpgm.train.atomic_write.write_atomically` writes through a hidden temporary beside its target,
``.NAME.HOST-PID.XXXXXXXX.tmp`` (``HOST`` a hash of the host name, ``PID`` the writing process's id, ``XXXXXXXX``
unique), so that a temporary says whether its writer may still be writing it: one of a process of this host that
has ended, or of this process's own id that this process is not writing (a killed process whose id it got again,
as a restarted container's PID 1 does), is stale (:func:`remove_stale_temporaries`).

This process counts its writes in progress per folder (:func:`writing_in`, entered before a write lists the folder
or creates its temporary), so a temporary named with its own id is stale only where no other write of its own is
under way in that folder (two threads writing one file never remove each other's).  A write lists its folder
only when the folder's modification time is not the one this process's last write there left
(:func:`stale_removed_before_write`), and then removes the stale temporaries of every target there: repeated
writes into a large folder do not list it each time.  A modification time in whole milliseconds recorded
within two seconds of it is not trusted (a file system of coarse timestamps, whole seconds or milliseconds,
could hide a change made in the same tick), as git treats its "racily clean" entries.  The folder is counted
by its real path: a symbolic link to it is the same folder.  A process forked from this one starts with the lock
that guards these counts free, whichever thread held it at the fork.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Iterator

from hybridpgm.errors import CheckpointError
from hybridpgm.paths import file_path

__all__ = ["remove_stale_temporaries"]

#: a temporary as :func:`~hybridpgm.train.atomic_write.write_atomically` names it: ``.NAME.HOST-PID.XXXXXXXX.tmp``
_NAMED = re.compile(r"\.(.+)\.([0-9a-f]{8})-([1-9][0-9]*)\.[^.]+\.tmp")
#: what followed ``.NAME.`` before writers were named (mkstemp's part alone)
_UNNAMED_WRITER = re.compile(r"[^.]+")

#: guards :data:`_WRITING` and :data:`_LOOKED`; a forked child gets a fresh one (:func:`_after_fork_in_child`)
_LOCK = threading.Lock()
#: folder (absolute) -> this process's writes (and write probes) in progress there
_WRITING: Counter[str] = Counter()
#: the folders :data:`_LOOKED` keeps, least recently written dropped first (a dropped folder costs its next write
#: one listing); before, a service writing each run into a folder of its own kept one entry per folder for good
_MAX_LOOKED = 256
#: folder (absolute) -> its modification time (ns) as this process's last write there left it, when trusted; at
#: most :data:`_MAX_LOOKED` folders (under :data:`_LOCK`)
_LOOKED: OrderedDict[str, int] = OrderedDict()


def _after_fork_in_child() -> None:
    """Give a process forked from this one a free :data:`_LOCK`.  Forked while another thread of the parent held it
    (counting a write, recording a folder), the child would inherit it held by a thread it does not have, and its
    first write would wait forever.  The counts it inherits stay: they are the parent's writes, whose temporaries
    carry the parent's id, and at most keep the child from taking a temporary of its own id for stale."""
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX; registered once, at import
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _host() -> str:
    """This host as a temporary's name records it: 8 hex digits of a hash of the host name."""
    return hashlib.blake2s(socket.gethostname().encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()


def _temporary_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: what the names of this process's temporaries of ``path`` begin with."""
    return f".{path.name}.{_host()}-{os.getpid()}."


def _key(folder: str | os.PathLike) -> str:
    """The folder as this process counts its writes there: its real path (a symbolic link to a folder and the
    folder itself are one folder; review C: counted apart, a write through the link took another thread's
    temporary in the folder for stale)."""
    return os.path.realpath(folder)


@contextlib.contextmanager
def writing_in(folder: str | os.PathLike) -> Iterator[str]:
    """Count a write of this process in ``folder`` for as long as the block runs (yields the folder's key): a
    temporary named with this process's id is not stale while another such write is under way there."""
    key = _key(folder)
    with _LOCK:
        _WRITING[key] += 1
    try:
        yield key
    finally:
        with _LOCK:
            _WRITING[key] -= 1
            if not _WRITING[key]:
                del _WRITING[key]


def _writer_ended(host: str, pid: int, key: str, own: int) -> bool:
    """Whether the writer ``pid`` of the host hashed ``host`` of a temporary in folder ``key`` is known to have
    ended: it is of this host and either this process's id while no write of this process but the caller's
    ``own`` (0 or 1) is under way in the folder (a killed process whose id this one got again), or another
    process's id for which ``kill(pid, 0)`` finds no process.  Anything else counts as alive: another host's, a
    process of another user (``EPERM``), a platform without POSIX signals."""
    if os.name != "posix" or host != _host():
        return False
    if pid == os.getpid():
        with _LOCK:
            return _WRITING[key] <= own
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return False


def _remove_stale(folder: Path, own: int, target: str | None = None, unnamed: bool = False) -> list[Path]:
    """Remove the temporaries in ``folder`` whose writer has ended (of the file named ``target`` only, or of any
    target), and with ``unnamed`` those of ``target`` named without a writer; ``own``: the caller's writes in
    progress there (see :func:`_writer_ended`)."""
    try:
        names = os.listdir(folder)
    except OSError:  # no folder yet (nothing to remove), or not readable
        return []
    key, removed = _key(folder), []
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        named = _NAMED.fullmatch(name)
        if named is not None:
            if (target is not None and named.group(1) != target) \
                    or not _writer_ended(named.group(2), int(named.group(3)), key, own):
                continue  # another target's, or a live writer's (or another host's): never touched
        elif not (unnamed and target is not None and name.startswith(f".{target}.")
                  and _UNNAMED_WRITER.fullmatch(name[len(target) + 2:-len(".tmp")])):
            continue  # not a name hybridpgm gives, or an old-style one not asked for
        stale = folder / name
        try:
            if not stat.S_ISREG(os.lstat(stale).st_mode):
                continue  # not a file a write of ours left: never remove it
            os.unlink(stale)
            removed.append(stale)
        except OSError:  # gone already, or not ours to remove (EPERM, EACCES, EROFS): left as it is
            pass
    return removed


def stale_removed_before_write(folder: Path, key: str) -> None:
    """Before a write into ``folder`` (counted by :func:`writing_in`, whose key is ``key``): remove the stale
    temporaries of every target there, unless the folder is as this process's last write there left it."""
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return
    if _LOOKED.get(key) != mtime:
        _remove_stale(folder, own=1)


def remember_folder(folder: Path, key: str) -> None:
    """After a write into ``folder``: record its modification time, unless it is in whole milliseconds (a coarse
    clock) and less than two seconds old (a change in the same tick could hide behind it), so that the next write
    lists it only if something else changed it.  The :data:`_MAX_LOOKED` folders most recently written are kept."""
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return
    with _LOCK:
        _LOOKED.pop(key, None)
        if mtime % 1_000_000 or time.time_ns() - mtime > 2_000_000_000:
            _LOOKED[key] = mtime  # the most recent, last
            if len(_LOOKED) > _MAX_LOOKED:
                _LOOKED.popitem(last=False)


def remove_stale_temporaries(path: str | os.PathLike, *, unnamed: bool = True) -> list[Path]:
    """Delete the temporary files killed writes of ``path`` left beside it (``.NAME.HOST-PID.XXXXXXXX.tmp``):
    those whose writer, a process of this host, has ended (and, with ``unnamed``, the default, those named
    without a writer).  Returns the removed paths.

    A temporary of a live process (a write still under way), of another host, or one that cannot be removed
    (another user's, in a sticky folder such as ``/tmp``; a read-only folder) is left where it is: it is not in
    the way, since each write makes a temporary of its own name.  One named with this process's id is stale
    when no write of this process is under way in the folder (its writer was killed, and this process got its
    id again).  :func:`~hybridpgm.train.atomic_write.write_atomically` removes those of every target in its folder
    before it writes (:func:`stale_removed_before_write`); ``fit`` calls this at its start, for its checkpoint.

    :param unnamed: also remove the temporaries named without a writer (``.NAME.XXXXXXXX.tmp``, as hybridpgm
        named them before), which cannot tell whether their writer lives: ``fit`` removes its checkpoint's when
        it starts, as it always did.
    :raises CheckpointError: ``path`` is not a str or ``os.PathLike`` (:func:`~hybridpgm.paths.file_path`).
    """
    path = file_path(path, "checkpoint", CheckpointError)
    return _remove_stale(path.parent, own=0, target=path.name, unnamed=unnamed)
