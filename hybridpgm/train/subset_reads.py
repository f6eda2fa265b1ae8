"""Reading a batch through torch's :class:`~torch.utils.data.Subset` (what :func:`~torch.utils.data.random_split`
makes) of a dataset that reads a batch at once: fit's :class:`~hybridpgm.train.batches.TensorData` (its ``rows``)
and :class:`~hybridpgm.data.binarize.DynamicBinarized` (its ``draw``).

A Subset's ``__getitems__`` hands the composed indices to its parent's ``__getitems__``, which for these two
returns torch's list of examples (:class:`~hybridpgm.data.binarize.DrawnExamples`: ``B`` views of the rows made by
``unbind``) only for :func:`~hybridpgm.train.batches.fetch_batch` to take the batch back out of it.  Composing the
indices as the Subsets compose them (``subset.indices[i]``, innermost last) and calling ``rows`` or ``draw`` once
gives the same batch without the list: a :class:`~hybridpgm.data.binarize.DynamicBinarized` makes the same one
draw from torch's global generator with the same indices, so a seeded run's draws are the same bits.  The list
cost 7x the read of a Subset of a TensorData (session 37) and 5-15% of a 128 x 784 Bernoulli draw with or
without labels (session 41).
"""

from __future__ import annotations

from typing import Any

import torch

from hybridpgm.data.binarize import DynamicBinarized

__all__ = ["read_through_subsets"]


def _under_subsets(dataset: torch.utils.data.Subset) -> Any:
    """The dataset that ``dataset``'s chain of torch's own :class:`~torch.utils.data.Subset` reads through its
    ``__getitems__`` where it is a :class:`~hybridpgm.train.batches.TensorData` or a
    :class:`~hybridpgm.data.binarize.DynamicBinarized` (their own ``__getitems__``, not a subclass's), else
    ``None``."""
    from hybridpgm.train.batches import TensorData

    while isinstance(dataset, torch.utils.data.Subset):
        if getattr(type(dataset), "__getitems__", None) is not torch.utils.data.Subset.__getitems__:
            return None
        dataset = dataset.dataset
    getitems = getattr(type(dataset), "__getitems__", None)
    return dataset if getitems in (TensorData.__getitems__, DynamicBinarized.__getitems__) else None


def _subset_indices(dataset: torch.utils.data.Subset, indices: torch.Tensor, wrap: bool = False) -> list:
    """``indices`` of ``dataset`` as the indices of the dataset under its Subsets, composed as each
    ``Subset.__getitems__`` composes them (``subset.indices[i]``).

    :param wrap: a negative index of a Subset counts from the end of the dataset under it, as ``dataset[i]`` and
        torch's ``TensorDataset`` read it (:meth:`~hybridpgm.train.batches.TensorData.rows` takes none: this is
        asked for only after an ``IndexError``, so that the usual read costs nothing more)."""
    rows = indices.tolist()
    while isinstance(dataset, torch.utils.data.Subset):
        rows = [dataset.indices[i] for i in rows]
        dataset = dataset.dataset
        if wrap:
            rows = [int(r) + len(dataset) if r < 0 else int(r) for r in rows]
    return rows


def read_through_subsets(dataset: Any, indices: torch.Tensor) -> tuple[bool, Any]:
    """``(True, batch)``: the examples ``indices`` of a chain of Subsets over a
    :class:`~hybridpgm.train.batches.TensorData` (its ``rows``) or a
    :class:`~hybridpgm.data.binarize.DynamicBinarized` (its ``draw``: indexing ``x`` wraps a negative index as
    ``x[i]`` does), read at once; ``(False, None)`` for any other dataset.

    :param indices: a 1-d ``LongTensor`` of indices of ``dataset``."""
    if not isinstance(dataset, torch.utils.data.Subset) or (root := _under_subsets(dataset)) is None:
        return False, None
    if isinstance(root, DynamicBinarized):
        return True, root.draw(_subset_indices(dataset, indices))  # the draw Subset.__getitems__ made, no list
    try:
        return True, root.rows(_subset_indices(dataset, indices))  # random_split's: no list of B examples (7x)
    except IndexError:  # a negative index of a Subset (the error path only: the read stays one index_select)
        return True, root.rows(_subset_indices(dataset, indices, wrap=True))
