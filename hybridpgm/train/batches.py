"""Deterministic batching for :func:`hybridpgm.fit`.

``fit`` owns the order in which examples are visited so that a run can be
resumed exactly and sharded across ranks: the order of epoch ``e`` is a
permutation drawn from a generator seeded by ``(seed, e)``, never from the
global RNG.  Step ``s`` always uses batch ``s mod B`` of epoch ``s // B`` (counted from where the epochs' layout
began, :class:`BatchStream`).  A batch's structure (tuples, named tuples, lists, mappings, string fields) is kept
when it is sized, moved and split into micro-batches (:mod:`hybridpgm.train.micro_batches`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset, default_collate

from hybridpgm.checks import shown_items
from hybridpgm.data.binarize import DrawnExamples, DynamicBinarized
from hybridpgm.data.validation import check_finite
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.train.subset_reads import read_through_subsets

__all__ = ["BatchStream", "TensorData", "batch_size_of", "collate_getitems", "fetch_batch", "getitems_returns_batch",
           "move_to", "num_steps", "steps_per_epoch"]


def getitems_returns_batch(dataset: Dataset) -> bool:
    """Whether ``dataset`` declares that its ``__getitems__(indices)`` returns a ready (collated) batch of any
    type, even a ``list``.

    The rule for a ``__getitems__`` result (see :func:`fetch_batch` and
    :func:`~hybridpgm.data.data_loader`): a ``list`` is torch's list of examples, one per index (what
    :class:`~torch.utils.data.Subset` and :class:`~torch.utils.data.StackDataset` return), and is collated
    with :func:`~torch.utils.data.default_collate`; anything else (a tuple, a dict, a tensor) is a ready batch
    and is used as it is.  A dataset whose ready batch is itself a ``list`` says so by the class attribute
    ``getitems_returns_batch = True``: its ``__getitems__`` result is then never collated.  A
    :class:`~torch.utils.data.Subset` (what :func:`~torch.utils.data.random_split` returns) of such a dataset is
    one too, since its ``__getitems__`` hands the indices to its parent's.  hybridpgm's :class:`TensorData` and
    :class:`~hybridpgm.data.binarize.DynamicBinarized` do not set it: theirs return torch's list of examples,
    carrying the batch (:class:`~hybridpgm.data.binarize.DrawnExamples`), so that torch's own ``DataLoader``
    collates them.
    """
    while isinstance(dataset, torch.utils.data.Subset):
        if not callable(getattr(dataset, "__getitems__", None)):
            return False
        dataset = dataset.dataset
    return getattr(type(dataset), "getitems_returns_batch", False) is True and callable(
        getattr(dataset, "__getitems__", None))


def collate_getitems(items: Any) -> Any:
    """One batch from what a dataset's ``__getitems__`` returned: a ``list`` is torch's list of examples,
    collated with :func:`~torch.utils.data.default_collate`, but for the examples of a batch drawn at once
    (:class:`~hybridpgm.data.binarize.DrawnExamples`), whose batch is taken as it is; anything else (tuple,
    dict, tensor) is a ready batch, returned as it is (see :func:`getitems_returns_batch`)."""
    if isinstance(items, DrawnExamples):
        return items.batch
    return default_collate(items) if isinstance(items, list) else items


def _collated(dataset: Dataset, indices: Sequence[int], items: list) -> Any:
    """``default_collate(items)``, its failure a :class:`DataError` naming the dataset, a few of the indices and
    what to do."""
    try:
        return default_collate(items)
    except (TypeError, RuntimeError, ValueError) as error:  # examples of other shapes, of a type torch cannot stack
        name = type(dataset).__name__
        raise DataError(
            f"cannot collate examples {shown_items(indices, 5, quote=str)} of {name} into a batch with torch's "
            f"default_collate (fit collates as a DataLoader without a collate_fn does): {error}. Return tensors "
            "of one shape from __getitem__ (a pandas row: torch.as_tensor(row.to_numpy())), or give "
            f"{name} a __getitems__(indices) that returns the batch itself (a tuple, dict or tensor: padded "
            "sequences and their lengths, say), which fit takes as it is") from error


def fetch_batch(dataset: Dataset, indices: torch.Tensor) -> Any:
    """The examples ``indices`` of ``dataset`` as one batch, as torch's ``DataLoader`` makes it.

    A dataset with ``__getitems__`` is read with it, once per batch, and is given the indices as a ``list`` of
    ``int`` (as torch's ``DataLoader`` gives them; hybridpgm's :class:`TensorData` reads the batch with its
    :meth:`~TensorData.rows`, given the tensor itself, as through torch's :class:`~torch.utils.data.Subset`
    (:func:`~torch.utils.data.random_split`; the indices composed as its ``__getitems__`` composes them), and a
    :class:`~hybridpgm.data.binarize.DynamicBinarized` draws it with its ``draw``, through Subsets too
    (:mod:`hybridpgm.train.subset_reads`), no list of examples made; a list of a batch read at once,
    :class:`~hybridpgm.data.binarize.DrawnExamples`, gives that batch).
    Its result is used as it is where
    :func:`getitems_returns_batch` says it is a ready batch (``getitems_returns_batch = True``), or where it
    is not a ``list`` (a tuple, dict or tensor is a ready batch); a ``list`` is torch's list of examples, one
    per index, and is collated with :func:`~torch.utils.data.default_collate`.  A dataset without
    ``__getitems__`` is read one example at a time and collated.

    :param indices: a 1-d ``LongTensor`` of example indices.
    :raises DataError: ``__getitems__`` returned a ``list`` whose length is not the number of indices (a
        ready batch given as a list: return a tuple or dict instead, or set ``getitems_returns_batch = True``
        on the dataset class), or the examples cannot be collated (of different shapes, or of a type
        ``default_collate`` does not take: the message names the dataset, the indices and what to do).
    """
    getitems = getattr(type(dataset), "__getitems__", None)
    if getitems is TensorData.__getitems__:  # read at once, no list of examples
        return dataset.rows(indices)
    read, batch = read_through_subsets(dataset, indices)  # random_split's, over either: no list of B examples
    if read:
        return batch
    if getitems is DynamicBinarized.__getitems__:  # drawn at once, no list
        return dataset.draw(indices)
    if getitems_returns_batch(dataset):
        return dataset.__getitems__(indices.tolist())
    if callable(getattr(dataset, "__getitems__", None)):
        rows = indices.tolist()
        items = dataset.__getitems__(rows)
        if isinstance(items, DrawnExamples):  # a Subset of a DynamicBinarized or a TensorData
            return items.batch
        if not isinstance(items, list):
            return items
        if len(items) != len(rows):
            raise DataError(
                f"{type(dataset).__name__}.__getitems__ returned a list of {len(items)} items for {len(rows)} "
                "indices; a list is taken as torch's list of examples, one per index. If it is a ready batch, "
                "return it as a tuple or dict instead, or set the class attribute getitems_returns_batch = True "
                f"on {type(dataset).__name__}")
        return _collated(dataset, rows, items)
    rows = indices.tolist()
    return _collated(dataset, rows, [dataset[i] for i in rows])


def _surely_finite(t: torch.Tensor) -> bool:
    """True only if a tensor holds no NaN/inf, from one float32 sum (NaN and infinities
    propagate through a sum); true for non-floating and empty tensors.  ``False`` is not
    proof of a bad value (complex tensors, or finite values whose sum overflows):
    the caller then scans the tensor exactly."""
    if t.is_complex():
        return False
    if not t.is_floating_point() or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.sum(dtype=torch.float32)))


class TensorData(Dataset):
    """A map-style dataset over tensors sharing their first dimension (what :func:`hybridpgm.fit` makes of
    tensors), read a batch at once (:meth:`rows`: one indexing operation per tensor).

    ``__getitems__`` (what torch's :class:`~torch.utils.data.DataLoader` calls) returns torch's list of examples,
    each as ``__getitem__`` gives it, carrying the batch it read in ``.batch``
    (:class:`~hybridpgm.data.binarize.DrawnExamples`): a plain ``DataLoader`` over it works with any
    ``num_workers``, and :func:`fetch_batch` and :func:`~hybridpgm.data.data_loader` take the batch as it is.

    :param tensors: tensors of shapes ``N x ...``; NaN/inf in floating tensors
        raise :class:`~hybridpgm.errors.DataError`.
    """

    def __init__(self, *tensors: torch.Tensor, single: bool | None = None):
        if not tensors:
            raise DataError("no tensors given")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise DataError(f"data element {i} is a {type(t).__name__}, expected a torch.Tensor")
            if t.dim() == 0:
                raise DataError(f"data element {i} is a scalar; expected shape N x ...")
            if t.shape[0] != tensors[0].shape[0]:
                shapes = shown_items((tuple(x.shape) for x in tensors), 5, quote=str)
                hint = ("; a list of one tensor per example is no data set: pad them to one shape and "
                        "torch.stack them, or give fit a Dataset whose __getitems__ pads each batch"
                        if len(tensors) > tensors[0].shape[0] else "")
                raise DataError(f"data tensors disagree on the number of examples (their first dimension): "
                                f"{len(tensors)} tensors of shapes {shapes}{hint}")
            if not _surely_finite(t):  # one pass, no temporary: a fraction of a full isfinite scan
                check_finite(t, f"data element {i}")  # exact; names the count and the first row
        self.tensors = tuple(tensors)
        self.single = len(tensors) == 1 if single is None else single

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int):
        items = tuple(t[index] for t in self.tensors)
        return items[0] if self.single else items

    def rows(self, indices: Sequence[int] | torch.Tensor):
        """The examples ``indices`` as one batch: ``x[indices]`` for one tensor (``single``), else the tuple of
        each tensor's rows.

        :param indices: a sequence of ``B`` example indices, or a 1-d integer tensor of them."""
        host = indices.device if isinstance(indices, torch.Tensor) else "cpu"  # a list: on the host, not the default
        index = torch.as_tensor(indices, dtype=torch.long, device=host)
        items = tuple(torch.index_select(t, 0, index.to(t.device)) for t in self.tensors)  # ~5x t[index] on a CPU
        return items[0] if self.single else items

    def __getitems__(self, indices: Sequence[int]) -> DrawnExamples:
        """The examples ``indices`` as torch's list of examples, read at once (:meth:`rows`, kept in
        :attr:`~hybridpgm.data.binarize.DrawnExamples.batch`)."""
        return DrawnExamples(self.rows(indices))


def steps_per_epoch(num_examples: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    """Steps of one epoch: each of ``world_size`` ranks takes ``floor(N / world_size)`` examples in batches of
    ``batch_size`` (a last incomplete one dropped with ``drop_last``).  With ``drop_last`` and no full batch the
    one incomplete batch is counted here, but :class:`BatchStream` refuses such a run."""
    full, rest = divmod(num_examples // world_size, batch_size)
    return full if (drop_last and full > 0) else full + (rest > 0)


class BatchStream:
    """Batches of one rank's shard, addressed by step number.

    :param dataset: a map-style dataset (see :func:`~hybridpgm.train.data_inputs.as_dataset`).
    :param int batch_size: examples per step on this rank.
    :param int seed: seeds the per-epoch permutations.
    :param bool shuffle: permute every epoch (else keep the dataset order).
    :param bool drop_last: drop a last incomplete batch.
    :param int rank: this process's rank; ``world_size`` the number of ranks.
        Every rank sees ``floor(N / world_size)`` examples per epoch.
    :param layout: ``(step, epoch)``: where the current layout of the epochs began (``(0, 0)`` but for a run
        resumed with another batch size, data size, ``drop_last``, ``shuffle`` or seed: there epoch ``epoch``
        starts at step ``step``, :func:`~hybridpgm.train.resume.epoch_layout`).  Step ``s >= step`` takes batch
        ``p`` of epoch ``epoch + e``, where ``e, p = divmod(s - step, batches_per_epoch)``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, layout: tuple[int, int] = (0, 0)):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.shard_size = len(dataset) // world_size
        if self.shard_size == 0:
            raise DataError(f"data has {len(dataset)} examples, fewer than the {world_size} ranks: each rank needs "
                            "at least one" if len(dataset) else "data has no examples: there is nothing to train on")
        full, rest = divmod(self.shard_size, batch_size)
        if drop_last and full == 0:
            raise ConfigError(f"drop_last=True leaves no batch: batch_size {batch_size} is larger than the "
                              f"{self.shard_size} examples {'per rank ' if world_size > 1 else ''}of the data; "
                              "lower batch_size or pass drop_last=False")
        self.batches_per_epoch = steps_per_epoch(len(dataset), batch_size, world_size, drop_last)
        self.layout = (int(layout[0]), int(layout[1]))
        self._order: tuple[int, torch.Tensor] | None = None

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[0] != epoch:
            n = len(self.dataset)
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = torch.randperm(n, generator=generator, device="cpu")  # the CPU generator's device
            else:
                order = torch.arange(n, device="cpu")
            order = order[: self.shard_size * self.world_size][self.rank :: self.world_size]
            self._order = (epoch, order)
        return self._order[1]

    def epoch_and_position(self, step: int) -> tuple[int, int]:
        """The epoch (0-based) of the batch used at ``step`` and its position in that epoch (for a step of
        the current layout: ``step >= layout[0]``)."""
        origin, first_epoch = self.layout
        epoch, position = divmod(step - origin, self.batches_per_epoch)
        return first_epoch + epoch, position

    def epoch_of(self, step: int) -> int:
        """The epoch (0-based) of the batch used at ``step``."""
        return self.epoch_and_position(step)[0]

    def batch(self, step: int):
        """The batch used at ``step``."""
        epoch, position = self.epoch_and_position(step)
        indices = self._epoch_order(epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        return fetch_batch(self.dataset, indices)


def first_batch(dataset: Dataset, size: int):
    """The first ``size`` examples of ``dataset`` (fewer if it is smaller), collated as a training batch."""
    return fetch_batch(dataset, torch.arange(min(size, len(dataset)), device="cpu"))


def _is_field(batch: Any) -> bool:
    """Whether ``batch`` is a list of per-example values that are not tensors (no tensor, tuple, list or mapping
    in it), such as the list of ``B`` strings :func:`~torch.utils.data.default_collate` makes of a string field."""
    return isinstance(batch, list) and not any(isinstance(v, (torch.Tensor, tuple, list, Mapping)) for v in batch)


def _first_size(batch: Any, size_of: Callable[[Any], int | None]) -> int | None:
    """The first non-``None`` ``size_of(leaf)`` of a nested batch, depth first in the batch's order."""
    size = size_of(batch)
    if size is not None or _is_field(batch):
        return size
    if isinstance(batch, (tuple, list, Mapping)):
        for part in batch.values() if isinstance(batch, Mapping) else batch:
            size = _first_size(part, size_of)
            if size is not None:
                return size
    return None


def batch_size_of(batch: Any) -> int:
    """Number of examples ``B`` in a (nested) batch: the leading size of its first tensor of one dimension or
    more, depth first through tuples (named ones too), lists and mappings (any
    :class:`collections.abc.Mapping`, a :class:`dict` or a :class:`collections.UserDict`), in their order;
    without one, the length of its first list of non-tensor values (a string field).  Other leaves (scalars,
    0-d tensors, ``None``) are not counted.

    :raises DataError: the batch holds neither (its type is named).
    """
    size = _first_size(batch, lambda b: b.shape[0] if isinstance(b, torch.Tensor) and b.dim() > 0 else None)
    if size is None:
        size = _first_size(batch, lambda b: len(b) if _is_field(b) else None)
    if size is None:
        raise DataError(f"cannot tell the number of examples of a batch of type {type(batch).__name__}: it holds "
                        "no tensor of one dimension or more and no list of per-example values")
    return size


def _like_sequence(batch: tuple | list, items: list) -> tuple | list:
    """``items`` as a sequence of ``batch``'s type: a named tuple from its fields (``type(batch)(*items)``), a
    tuple or list from the items; a subclass that cannot be built from them becomes a plain tuple or list."""
    if isinstance(batch, tuple) and hasattr(type(batch), "_fields"):
        return type(batch)(*items)
    try:
        return type(batch)(items)
    except TypeError:
        return tuple(items) if isinstance(batch, tuple) else list(items)


def _like_mapping(batch: Mapping, items: dict) -> Mapping:
    """``items`` as a mapping of ``batch``'s type, as :func:`~torch.utils.data.default_collate` rebuilds one: a
    mutable mapping is copied and updated (a :class:`collections.UserDict` keeps its class), another is built
    from a dict; one that cannot be becomes a :class:`dict`."""
    if type(batch) is dict:
        return items
    try:
        if isinstance(batch, MutableMapping):
            clone = copy.copy(batch)
            clone.update(items)
            return clone
        return type(batch)(items)
    except TypeError:
        return items


def move_to(batch: Any, device: torch.device):
    """Move every tensor of a (nested) batch to ``device``, keeping the type of its tuples (named ones too),
    lists and mappings (any :class:`collections.abc.Mapping`); other leaves are kept as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if _is_field(batch):
        return batch
    if isinstance(batch, Mapping):
        return _like_mapping(batch, {k: move_to(v, device) for k, v in batch.items()})
    if isinstance(batch, (tuple, list)):
        return _like_sequence(batch, [move_to(b, device) for b in batch])
    return batch


def num_steps(batches_per_epoch: int, epochs: int | None, max_steps: int | None,
              layout: tuple[int, int] = (0, 0)) -> int:
    """Steps of a run: ``batches_per_epoch * epochs``, at most ``max_steps``.  ``epochs=None`` (``fit``'s
    default) is one epoch without ``max_steps`` and no bound on the epochs with it (``max_steps`` steps).

    :param layout: ``(step, epoch)`` where the current layout of the epochs began (see :class:`BatchStream`):
        the run then ends after ``step + batches_per_epoch * (epochs - epoch)`` steps."""
    if epochs is None:
        return batches_per_epoch if max_steps is None else max_steps
    origin, first_epoch = layout
    total = origin + batches_per_epoch * max(epochs - first_epoch, 0)
    return total if max_steps is None else min(total, max_steps)
