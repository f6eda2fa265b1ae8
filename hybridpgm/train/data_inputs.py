"""What :func:`hybridpgm.fit` (and :func:`~hybridpgm.data.data_loader`) accept as data, and the checks made on it
before any example is read.

A tensor is one field of ``N`` examples; a tuple (or a ``list``) of tensors sharing their first dimension is fields
of the same ``N`` examples (:class:`~hybridpgm.train.batches.TensorData`); a map-style dataset with ``__len__`` is
used as it is.  A ``list`` of tensors that looks like one tensor per example is refused rather than read as
fields, and so are a ``DataLoader`` (naming what of it ``fit`` would not use), an ``IterableDataset`` and arrays.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from hybridpgm.checks import shown_items
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.meta_data import refuse_meta
from hybridpgm.train.batches import TensorData

__all__ = ["as_dataset", "check_shards"]


def _examples_list(data: list) -> str | None:
    """Why a ``list`` of tensors is refused: all of one shape and more of them than the rows of each (or 0-d), it
    looks like one tensor per example, which would be read as fields; ``None`` for a list of fields."""
    shape = data[0].shape
    if len(data) < 2 or (shape and len(data) <= shape[0]) or any(t.shape != shape for t in data):
        return None
    read = f"{len(data)} fields of {shape[0]} examples" if shape else "fields, and 0-d tensors have no rows"
    return (f"data is a list of {len(data)} tensors of shape {tuple(shape)}: fit reads a list or tuple of tensors "
            f"as fields sharing their examples (here {read}), yet more tensors than rows looks like one tensor per "
            f"example. Examples: pass torch.stack(data), one tensor of shape {(len(data), *shape)}; fields: pass "
            "them as a tuple")


def _loader_refusal(loader: torch.utils.data.DataLoader, caller: str) -> str:
    """The refusal of a ``DataLoader``, naming what of it ``fit`` would not use and what to do instead."""
    if caller != "fit":
        return f"{caller} takes the dataset, not a DataLoader: pass loader.dataset"
    unused = []
    if type(loader.sampler) not in (torch.utils.data.SequentialSampler, torch.utils.data.RandomSampler):
        unused.append(f"its sampler {type(loader.sampler).__name__} (fit visits each example once an epoch, in a "
                      "seeded order: weight the examples in the loss, or repeat them in the dataset)")
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not torch.utils.data.BatchSampler:
        unused.append(f"its batch_sampler {type(loader.batch_sampler).__name__}")
    if loader.collate_fn not in (default_collate, torch.utils.data.default_convert):
        unused.append(f"its collate_fn {getattr(loader.collate_fn, '__name__', type(loader.collate_fn).__name__)} "
                      "(give the dataset a __getitems__(indices) that returns the batch: fit takes it as it is)")
    if loader.num_workers > 0:  # fit has no workers: a decoding-heavy __getitem__ then runs in one process
        unused.append(f"its num_workers={loader.num_workers}"
                      + (" (persistent_workers=True)" if loader.persistent_workers else "")
                      + " (fit reads every batch in the training process: a costly __getitem__, such as decoding "
                      "images, then runs in that one process; decode ahead of time, or give the dataset a "
                      "__getitems__(indices) that reads a batch at once)")
    if loader.pin_memory:
        unused.append("its pin_memory=True (fit moves each batch to its device itself)")
    batching = [f"batch_size={loader.batch_size if loader.batch_size is not None else 'B'}"]
    if type(loader.sampler) is torch.utils.data.SequentialSampler:
        batching.append("shuffle=False")  # fit shuffles by default
    if loader.drop_last:
        batching.append("drop_last=True")
    return ("fit takes the dataset, not a DataLoader: it owns batching so that runs resume exactly and shard across "
            f"ranks; pass loader.dataset and the loader's batching: fit(objective, loader.dataset, "
            f"{', '.join(batching)})" + (f". fit would not use {'; '.join(unused)}" if unused else ""))


def as_dataset(data: Any, caller: str = "fit") -> Dataset:
    """The map-style dataset of ``data``: a tensor, a tuple of tensors sharing their first dimension (fields), a
    ``list`` of such tensors, or a map-style dataset with ``__len__``.

    :param caller: the function named in the messages (``"fit"``, ``"data_loader"``).
    :raises DataError: a ``list`` of tensors that looks like one tensor per example (all of one shape, more of
        them than the rows of each: stack them, or pass fields as a tuple), or tensors that disagree on the
        number of examples.
    :raises DeviceError: a tensor on the meta device (no values to read; :func:`~hybridpgm.meta_data.refuse_meta`).
    :raises ConfigError: a ``DataLoader`` (naming what of it ``fit`` would not use), an ``IterableDataset``, a
        dataset without ``__len__``, a NumPy array or another type.
    """
    if isinstance(data, torch.Tensor):
        refuse_meta(data, f"{caller} data")
        return TensorData(data, single=True)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        for i, t in enumerate(data):
            refuse_meta(t, f"{caller} data field {i}")
        refused = _examples_list(data) if isinstance(data, list) else None
        if refused is not None:
            raise DataError(refused)
        return TensorData(*data, single=False)
    if isinstance(data, torch.utils.data.DataLoader):
        raise ConfigError(_loader_refusal(data, caller))
    refused = f"data must be a Tensor, a tuple of Tensors or a map-style Dataset, got {type(data).__name__}"
    if isinstance(data, torch.utils.data.IterableDataset):  # with a __len__ too: it has no __getitem__
        raise ConfigError(f"{refused} (an IterableDataset: {caller} draws examples by index, so that runs resume "
                          "exactly and shard across ranks; wrap the examples in a map-style Dataset)")
    if isinstance(data, Dataset):
        if hasattr(data, "__len__"):
            return data
        raise ConfigError(f"{refused}, a Dataset without __len__: {caller} needs the number of examples "
                          "(define __len__)")
    if hasattr(data, "__array__"):  # a NumPy array or memmap, a data frame
        raise ConfigError(f"{refused}: pass a tensor (torch.from_numpy(array) shares a NumPy array's memory, "
                          "no copy; a data frame: torch.from_numpy(frame.to_numpy()))")
    raise ConfigError(refused)


def check_shards(dataset: Dataset, world_size: int = 1, shuffle: bool = True) -> str | None:
    """Check that each of ``world_size`` ranks gets an example of ``dataset``, before any is read.

    :returns: a warning when some examples are never seen: without ``shuffle`` each rank takes
        ``floor(N / world_size)`` examples of the same order in every epoch, so the last ``N mod world_size``
        are left out of every epoch (with ``shuffle`` each epoch leaves out others); else ``None``.
    :raises DataError: the dataset is empty, or has fewer examples than ranks.
    """
    n = len(dataset)
    if n == 0:
        raise DataError(f"data has no examples ({type(dataset).__name__} of length 0): there is nothing to train on")
    if n < world_size:
        raise DataError(f"data has {n} examples, fewer than the {world_size} ranks (torchrun): each rank needs at "
                        "least one")
    left = n % world_size
    if shuffle or left == 0:
        return None
    return (f"with shuffle=False on {world_size} ranks, {left} of the {n} examples are never seen: each rank takes "
            f"floor({n}/{world_size}) = {n // world_size} examples per epoch in the data's order, which leaves out "
            f"examples {shown_items(range(n - left, n), 5, quote=str)} (the last {left}) in every epoch; pass "
            f"shuffle=True (each epoch then leaves out others) or a number of examples divisible by {world_size}")
