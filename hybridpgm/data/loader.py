"""A ``DataLoader`` helper for evaluation loops and user code.

:func:`hybridpgm.fit` batches data itself (for exact resume and rank
sharding); use :func:`data_loader` elsewhere.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from hybridpgm.checks import flag, positive_int, positive_real, seed_of
from hybridpgm.errors import ConfigError
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["data_loader"]


def _collate_identity(batch):
    return batch


@keyword_only_soon("shuffle", "seed", "drop_last")
def data_loader(data: torch.Tensor | tuple | Dataset, batch_size: int = 128, *, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False, **loader_options) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` over a tensor, tuple of tensors
    or dataset; batched reads use the dataset's ``__getitems__`` when it has one
    (one indexing operation per batch instead of one per example).  Examples read
    one by one, and a ``__getitems__`` result that is a ``list`` (torch's list of
    examples, as :class:`~torch.utils.data.Subset` and
    :class:`~torch.utils.data.StackDataset` return), are collated with
    :func:`~torch.utils.data.default_collate`, as torch's ``DataLoader`` does; a
    ``__getitems__`` result of any other type (a tuple, dict or tensor) is a ready
    batch and is used as it is, as is any result of a dataset whose class sets
    ``getitems_returns_batch = True``
    (:func:`~hybridpgm.train.batches.getitems_returns_batch`).

    :param data: a tensor (``N x ...``, one example per row), a tuple of tensors with the same ``N``, or a
        :class:`~torch.utils.data.Dataset`.
    :param int batch_size: examples per batch, a positive integer (default 128).
    :param bool shuffle: permute the examples every epoch (``True`` or ``False``).
    :param seed: seeds the shuffling generator, so the order is reproducible.
    :param bool drop_last: drop a last incomplete batch (``True`` or ``False``).
    :param loader_options: further :class:`~torch.utils.data.DataLoader` options (``num_workers``,
        ``pin_memory``, ``persistent_workers``, ``worker_init_fn``, ``multiprocessing_context``, ...); worker
        processes get their seeds from ``seed`` too (torch derives them from the loader's generator).
    :raises ConfigError: ``batch_size`` is not a positive integer, ``seed`` not an integer
        (``bool`` and floats refused), ``shuffle`` or ``drop_last`` not a ``bool``, ``data``
        is of an unsupported type, or ``loader_options`` names an option set here (``generator``,
        ``collate_fn``, ``sampler``, ``batch_sampler``).
    :raises DataError: the data hold NaN/inf, its tensors disagree on the number of examples, or it is a ``list``
        of tensors that looks like one tensor per example (:func:`~hybridpgm.train.data_inputs.as_dataset`).
    """
    batch_size = positive_int(batch_size, "data_loader batch_size")
    seed = seed_of(seed, "data_loader seed")
    shuffle = flag(shuffle, "data_loader shuffle")
    drop_last = flag(drop_last, "data_loader drop_last")
    clash = sorted(set(loader_options) & {"generator", "collate_fn", "sampler", "batch_sampler", "dataset"})
    if clash:
        raise ConfigError(f"data_loader sets {clash} itself (the data, the shuffling generator from seed, the batch "
                          "collation); build a torch.utils.data.DataLoader directly for your own")
    for name in ("num_workers", "prefetch_factor"):  # torch checks these late (num_workers=1.5), or not at all
        if name in loader_options and loader_options[name] is not None:
            loader_options[name] = positive_int(loader_options[name], f"data_loader {name}",
                                                minimum=0 if name == "num_workers" else 1)
    if "timeout" in loader_options:
        loader_options["timeout"] = positive_real(loader_options["timeout"], "data_loader timeout", allow_zero=True)
    # here: hybridpgm.train imports hybridpgm.data
    from hybridpgm.train.batches import collate_getitems, getitems_returns_batch
    from hybridpgm.train.data_inputs import as_dataset

    dataset = as_dataset(data, caller="data_loader")
    generator = torch.Generator().manual_seed(seed)
    # module-level functions, so that worker processes can unpickle them
    collate = _collate_identity if getitems_returns_batch(dataset) else collate_getitems
    try:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last, collate_fn=collate, **loader_options)
    except (TypeError, ValueError) as error:  # an unknown option, or options that do not go together
        raise ConfigError(f"data_loader options {sorted(loader_options)}: {error}") from error
