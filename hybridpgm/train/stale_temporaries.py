"""The temporary files of atomic writes, named after their writer, and the removal of those killed writes left.

:func:`~hybridpgm.train.atomic_write.write_atomically` writes through a hidden temporary beside its target,
``.NAME.HOST-PID.XXXXXXXX.tmp`` (``HOST`` a hash of the host name, ``PID`` the writing process's id, ``XXXXXXXX``
unique), so that a temporary says whether its writer may still be writing it: one of a process of this host that
has ended, or of this process's own id that this process is not writing (a killed process whose id it got again,
as a restarted container's PID 1 does), is stale (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
from pathlib import Path

from hybridpgm.errors import CheckpointError
from hybridpgm.paths import file_path

__all__ = ["remove_stale_temporaries"]

#: what follows ``.NAME.`` in a temporary's name: the writer's host hash and process id, then mkstemp's part
_NAMED_WRITER = re.compile(r"([0-9a-f]{8})-([1-9][0-9]*)\.[^.]+")
#: what followed it before writers were named (mkstemp's part alone)
_UNNAMED_WRITER = re.compile(r"[^.]+")


def _host() -> str:
    """This host as a temporary's name records it: 8 hex digits of a hash of the host name."""
    return hashlib.blake2s(socket.gethostname().encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()


def _temporary_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: what the names of this process's temporaries of ``path`` begin with."""
    return f".{path.name}.{_host()}-{os.getpid()}."


#: the temporaries this process is writing now (absolute paths), so that one named with this process's id but not
#: among them is known to be stale: a killed process whose id this one got again (a restarted container's PID 1)
_OPEN: set[str] = set()
#: target -> its folder's modification time (ns) after this process last looked for its stale temporaries and
#: wrote it: ``write_atomically`` lists the folder again only when something else has changed it since
_LOOKED: dict[str, int] = {}


def _writer_ended(host: str, pid: int, temporary: Path) -> bool:
    """Whether the writer of ``temporary``, the process ``pid`` of the host hashed ``host``, is known to have ended:
    it is of this host and either this process's id on a temporary this process is not writing (a killed process
    whose id this one got again, as a restarted container's PID 1 does), or another process's id for which
    ``kill(pid, 0)`` finds no process.  Anything else counts as alive: another host's, a process of another user
    (``EPERM``), a platform without POSIX signals."""
    if os.name != "posix" or host != _host():
        return False
    if pid == os.getpid():
        return str(temporary) not in _OPEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return False


def _remove_stale(path: Path, unnamed: bool) -> list[Path]:
    """Remove the temporaries of ``path`` whose writer has ended (and, with ``unnamed``, those named without a
    writer); see :func:`remove_stale_temporaries`."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:  # no folder yet (nothing to remove), or not readable
        return []
    removed = []
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        middle = name[len(prefix):-len(".tmp")]
        named = _NAMED_WRITER.fullmatch(middle)
        stale = path.parent / name
        if named is not None:
            if not _writer_ended(named.group(1), int(named.group(2)), stale):
                continue  # a live writer's (or another host's): never touched
        elif not (unnamed and _UNNAMED_WRITER.fullmatch(middle)):
            continue  # another target's, or not a name hybridpgm gives
        try:
            if not stat.S_ISREG(os.lstat(stale).st_mode):
                continue  # not a file a write of ours left: never remove it
            os.unlink(stale)
            removed.append(stale)
        except OSError:  # gone already, or not ours to remove (EPERM, EACCES, EROFS): left as it is
            pass
    return removed


def remove_stale_temporaries(path: str | os.PathLike, *, unnamed: bool = True) -> list[Path]:
    """Delete the temporary files killed writes of ``path`` left beside it (``.NAME.HOST-PID.XXXXXXXX.tmp``):
    those whose writer, a process of this host, has ended (and, with ``unnamed``, the default, those named
    without a writer).  Returns the removed paths.

    A temporary of a live process (a write still under way), of another host, or one that cannot be removed
    (another user's, in a sticky folder such as ``/tmp``; a read-only folder) is left where it is: it is not in
    the way, since each write makes a temporary of its own name.  One named with this process's id that this
    process is not writing is stale (its writer was killed, and this process got its id again).
    :func:`write_atomically` calls this before a write of ``path`` (unless the folder is unchanged since this
    process last wrote ``path``), with ``unnamed=False``; ``fit`` at its start, for its checkpoint.

    :param unnamed: also remove the temporaries named without a writer (``.NAME.XXXXXXXX.tmp``, as hybridpgm
        named them before), which cannot tell whether their writer lives: ``fit`` removes its checkpoint's when
        it starts, as it always did.
    :raises CheckpointError: ``path`` is not a str or ``os.PathLike`` (:func:`~hybridpgm.paths.file_path`).
    """
    return _remove_stale(file_path(path, "checkpoint", CheckpointError), unnamed)
