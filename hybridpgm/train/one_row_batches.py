"""An epoch's last batch of one row under batch normalisation, refused at :func:`~hybridpgm.train.trainer.fit`'s
first step rather than when the run reaches that batch.

Torch's batch norm in training mode normalises each channel with the statistics of its input over the rows and
the spatial dims, :math:`\\hat x = (x - \\mu_B) / \\sqrt{\\sigma_B^2 + \\epsilon}` [1], and refuses an input with one
value per channel (``size(0) * prod(size(2:)) == 1``: torch's ``ValueError`` "Expected more than 1 value per channel
when training").  A data set of :math:`N` examples in batches of :math:`B` per rank (``drop_last=False``) ends each
epoch with a batch of :math:`r = \\lfloor N / R \\rfloor \\bmod B` rows on each of :math:`R` ranks, split by
``accumulate=M`` into micro-batches of :math:`\\lfloor r/M \\rfloor` or :math:`\\lceil r/M \\rceil` rows: one of
them has one row exactly where :math:`1 \\le r < 2M`.  Such a run trained a whole epoch and then stopped with
torch's error (or a model's own :class:`~hybridpgm.errors.ConfigError`) at that batch.

Whether a layer's input at that batch will hold one value per channel is not known before the model runs (a
``BatchNorm2d`` over images, or a layer fed :math:`K` particles per row, takes one row).  So where the run will
reach such a batch, :func:`refusing_one_row_last_batch` hooks the model's batch norms in training mode until
their first call on the first step's first micro-batch (of a full batch, :math:`m = \\lceil B / M \\rceil` rows;
of the last batch, :math:`\\lceil r / M \\rceil`, where a resumed run starts at it): an input of shape ``[m, C]``
(or ``[m, C, 1, ...]``) follows the rows one for one and will hold one value per channel at the one-row
micro-batch, and the call raises :class:`~hybridpgm.errors.ConfigError` before any parameter moves, naming the
layer, the data set's size, the batch size and the remedy (``drop_last=True``).  An input of ``m`` rows with
spatial dims removes the hook; one of other rows (a probe on doubled rows, particles) leaves it for the next call.
Runs with no such batch, and models without batch norm, get no hook.  (A tensor of a fixed size that happens to
have :math:`m` rows, a learned constant ``[B, C]``, has that shape too and is refused, although the last batch
does not reach it: ``drop_last=True`` or another ``batch_size`` trains it.)

[1] S. Ioffe, C. Szegedy, *Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
Shift*, 2015.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.batches import BatchStream

__all__ = ["one_row_last_batch", "refusing_one_row_last_batch"]


def one_row_last_batch(num_examples: int, batch_size: int, world_size: int, drop_last: bool,
                       accumulate: int) -> int | None:
    """The rows ``r`` of each rank's last, incomplete batch of an epoch where it (or one of its micro-batches)
    has one row while the full batches have none such (``None`` otherwise: no incomplete batch, ``drop_last``,
    an epoch of that batch alone, or full batches that already split into one-row micro-batches -- those fail at
    the first step by themselves)."""
    full, rest = divmod(num_examples // world_size, batch_size)
    if drop_last or full == 0 or rest == 0 or batch_size < 2 * accumulate or rest >= 2 * accumulate:
        return None
    return rest


def _reaches_last_batch(stream: BatchStream, start: int, stop: int) -> bool:
    """Whether steps ``start`` to ``stop - 1`` take an epoch's last batch (step ``start`` itself may: a run resumed
    there)."""
    if stop <= start:
        return False
    last = stream.batches_per_epoch - 1
    return start + (last - stream.epoch_and_position(start)[1]) < stop


def _message(name: str, layer: torch.nn.Module, shape: tuple[int, ...], *, first: int, num_examples: int,
             rows: int, stream: BatchStream, accumulate: int, resumed_there: bool) -> str:
    ranks = f" per rank ({stream.world_size} ranks of {stream.shard_size} examples)" if stream.world_size > 1 else ""
    split = ""
    if accumulate > 1:
        sizes = [len(part) for part in torch.arange(rows).tensor_split(accumulate) if len(part)]
        split = f", which accumulate={accumulate} splits into micro-batches of {', '.join(map(str, sizes))} rows"
    return (f"fit: the data's {num_examples} examples in batches of batch_size={stream.batch_size}{ranks} end each "
            f"epoch with a batch of {rows} row{'s' if rows != 1 else ''}{split}, but batch norm layer "
            f"'{name or 'the module itself'}' ({type(layer).__name__}, training mode) normalises over the rows "
            f"(its input has shape {shape} on a first micro-batch of {first} rows), and in training mode a batch "
            f"norm refuses one row: the run would stop when it reaches that batch"
            f"{' (this run resumes at that batch)' if resumed_there else ''}; pass drop_last=True to leave "
            f"it out, or choose a batch_size whose last batch has at least {2 * accumulate} rows (or none), or put "
            f"the layer in eval mode")


class _OneRowWatch:
    """The forward pre-hook :func:`refusing_one_row_last_batch` puts on a batch norm: ``check(layer, args)``.  A copy
    of the module made while it is hooked (:func:`copy.deepcopy`, :mod:`pickle`: a callback's snapshot, a spawn
    child) gets an inert hook, which removes itself from its layer at its first call: the watch is of ``fit``'s
    module during ``fit`` (a local function would make the module unpicklable, and a copy would keep raising after
    ``fit``)."""

    def __init__(self, check=None, key: int | None = None):
        self.check, self.key = check, key

    def __call__(self, layer: torch.nn.Module, args: tuple) -> None:
        if self.check is not None:
            return self.check(layer, args)
        layer._forward_pre_hooks.pop(self.key, None)  # a copy's (torch calls the hooks of a tuple of them)

    def __reduce__(self):
        return _OneRowWatch, (None, self.key)


@contextlib.contextmanager
def refusing_one_row_last_batch(module: torch.nn.Module, stream: BatchStream, *, num_examples: int,
                                accumulate: int, drop_last: bool, start: int, stop: int) -> Iterator[None]:
    """Within the context, where steps ``start`` to ``stop - 1`` reach an epoch's last batch with a micro-batch of
    one row (:func:`one_row_last_batch`), a call of a batch norm of ``module`` in training mode on an input of
    ``[m, C]`` (or ``[m, C, 1, ...]``), ``m`` the rows of step ``start``'s first micro-batch (of a full batch, or
    of the last batch where a resumed run starts there), raises :class:`~hybridpgm.errors.ConfigError`; the
    layer's first call on ``m`` rows with spatial dims unhooks it.  Nothing is hooked
    otherwise (nor is a ``SyncBatchNorm`` over several ranks: torch normalises it over the ranks' rows together);
    every hook is gone when the context ends, and a copy of the module made meanwhile holds an inert one
    (:class:`_OneRowWatch`).

    :param stream: the run's batches (batch size per rank, ranks, epochs' layout).
    :raises ConfigError: from the layer's call, naming the layer, its input's shape, the data set's size, the
        batch size (and ``accumulate``'s micro-batches) and the remedy."""
    rows = one_row_last_batch(num_examples, stream.batch_size, stream.world_size, drop_last, accumulate)
    layers = [(name, m) for name, m in module.named_modules()  # a SyncBatchNorm over ranks takes one row per rank
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
              and not (stream.world_size > 1 and isinstance(m, torch.nn.SyncBatchNorm))]
    if rows is None or not layers or not _reaches_last_batch(stream, start, stop):
        yield
        return
    resumed_there = stream.epoch_and_position(start)[1] == stream.batches_per_epoch - 1
    # the first micro-batch's rows (torch.tensor_split's longer part) of step start's batch
    first = -(-(rows if resumed_there else stream.batch_size) // accumulate)
    handles = {}

    def check_for(name: str, layer: torch.nn.Module):
        def check(_, args):
            shape = tuple(args[0].shape) if args and torch.is_tensor(args[0]) else ()
            if len(shape) < 2 or shape[0] != first:
                return  # not the rows one for one (a probe on doubled rows, particles): the next call tells
            # kept: a probe that swallows the error leaves it for the step to raise
            if math.prod(shape[2:]) == 1:
                raise ConfigError(_message(name, layer, shape, first=first, num_examples=num_examples, rows=rows,
                                           stream=stream, accumulate=accumulate, resumed_there=resumed_there))
            handles.pop(name).remove()  # spatial dims: one row holds several values per channel
        return check

    for name, layer in layers:
        watch = _OneRowWatch(check_for(name, layer))
        handles[name] = layer.register_forward_pre_hook(watch)
        watch.key = handles[name].id
    try:
        yield
    finally:
        for handle in handles.values():
            handle.remove()
