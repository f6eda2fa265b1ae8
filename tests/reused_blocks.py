"""An allocator that puts a new tensor where a freed one was, for tests of caches keyed on data pointers.

CUDA's caching allocator gives a freed block to the next request it fits, and glibc's ``malloc`` sometimes does:
a tensor whose data is replaced twice (``p.data = a``, later ``p.data = b``) may then find ``b`` at the address
its first data had, at the same version (``.data =`` moves no version counter).  :class:`Blocks` does so every
time, deterministically: it hands out tensors in a few fixed blocks of memory, a block again as soon as no storage
uses it (as any allocator: never a block still in use).
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef


class Blocks:
    """``count`` blocks of ``nbytes`` bytes; :meth:`tensor` copies values into the first free one.

    :param int nbytes: the size of each block (at least the largest tensor asked for).
    :param int count: how many blocks."""

    def __init__(self, nbytes: int, count: int = 4):
        self._blocks = [bytearray(nbytes) for _ in range(count)]
        self._given: list[StorageWeakRef | None] = [None] * count

    def tensor(self, values) -> torch.Tensor:
        """A new tensor (a storage of its own) holding ``values``, in the first block no live storage uses.

        :param values: anything :func:`torch.as_tensor` takes.
        :raises RuntimeError: every block is in use."""
        values = torch.as_tensor(values)
        for i, block in enumerate(self._blocks):
            if self._given[i] is None or self._given[i].expired():
                storage = torch.frombuffer(block, dtype=values.dtype, count=values.numel()).untyped_storage()
                t = torch.empty(0, dtype=values.dtype).set_(storage, 0, values.shape)
                t.copy_(values)
                self._given[i] = StorageWeakRef(storage)
                return t
        raise RuntimeError("every block is in use")
