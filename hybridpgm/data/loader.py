"""A ``DataLoader`` helper for evaluation loops and user code.

:func:`hybridpgm.fit` batches data itself (for exact resume and rank
sharding); use :func:`data_loader` elsewhere.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from hybridpgm.checks import positive_int, seed_of

__all__ = ["data_loader"]


def _collate_identity(batch):
    return batch


def data_loader(data: torch.Tensor | tuple | Dataset, batch_size: int = 128, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` over a tensor, tuple of tensors
    or dataset; batched reads use the dataset's ``__getitems__`` when it has one
    (one indexing operation per batch instead of one per example).

    :param int batch_size: examples per batch, a positive integer.
    :param seed: seeds the shuffling generator, so the order is reproducible.
    :raises ConfigError: ``batch_size`` is not a positive integer or ``seed`` not an integer
        (``bool`` and floats refused), or ``data`` is of an unsupported type.
    :raises DataError: the data hold NaN/inf or its tensors disagree on the number of examples.
    """
    batch_size = positive_int(batch_size, "data_loader batch_size")
    seed = seed_of(seed, "data_loader seed")
    from hybridpgm.train.batches import as_dataset  # here: hybridpgm.train imports hybridpgm.data

    dataset = as_dataset(data)
    generator = torch.Generator().manual_seed(seed)
    if hasattr(dataset, "__getitems__"):
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last, collate_fn=_collate_identity)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)
