"""Reading at most a given number of bytes from an open binary file, taking no more memory than it holds.

``handle.read(count)`` allocates ``count`` bytes before it reads any (a file object does not know how much a
gzip stream will inflate to), so a bound meant to protect the reader, ``read(max_bytes + 1)`` with
``max_bytes = 2**40``, would itself ask for a terabyte.  :func:`read_at_most` reads in chunks of
:data:`CHUNK` bytes instead: the memory taken is what the file holds, plus one chunk.  Used by
:func:`~hybridpgm.graphs.bif.read_bif` and :func:`~hybridpgm.data.fashion_mnist.read_idx`.
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["CHUNK", "read_at_most"]

#: the bytes asked of the file at once (16 MiB)
CHUNK = 1 << 24


def read_at_most(handle: BinaryIO, count: int) -> bytearray:
    """Up to ``count`` bytes from ``handle``, fewer only at its end.

    :param handle: a file opened for binary reading (``open(path, "rb")``, ``gzip.open(path, "rb")``).
    :param int count: the most bytes read (``>= 0``).
    :returns: the bytes read, ``min(count, what is left in the file)`` of them.
    """
    data = bytearray()
    while len(data) < count:
        chunk = handle.read(min(CHUNK, count - len(data)))
        if not chunk:
            break
        data += chunk
    return data
