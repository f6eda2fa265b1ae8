"""Micro-batches of :func:`hybridpgm.fit`'s ``accumulate``: a step's batch of :math:`B` examples split into
:math:`M` parts of :math:`m_i` examples, each weighted :math:`m_i / B` in the update, so that accumulated
gradients equal the full batch's for a loss that is a mean over examples; and the messages that name a
micro-batch (its origin in a data error, a micro-batch of one row under batch normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hybridpgm.checks import shown_items
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.train.batches import _is_field, _like_mapping, _like_sequence, batch_size_of

__all__ = ["micro_batch_origin", "one_row_micro_batch_error", "split_batch"]


def _chunk(batch: Any, sections: int, rows: int) -> list:
    """``sections`` parts of a batch of ``rows`` examples: each tensor of one dimension or more split along
    its first as :func:`torch.tensor_split` does (the first ``rows % sections`` parts one row longer), each list
    of ``rows`` non-tensor values likewise; other leaves (scalars, 0-d tensors, ``None``, strings, a list of
    another length) are in every part unchanged."""
    if isinstance(batch, torch.Tensor):
        return list(torch.tensor_split(batch, sections)) if batch.dim() > 0 else [batch] * sections
    if _is_field(batch):
        if len(batch) != rows:
            return [batch] * sections
        size, longer = divmod(rows, sections)
        bounds = [i * size + min(i, longer) for i in range(sections + 1)]
        return [batch[bounds[i]:bounds[i + 1]] for i in range(sections)]
    if isinstance(batch, Mapping):
        parts = {k: _chunk(v, sections, rows) for k, v in batch.items()}
        return [_like_mapping(batch, {k: v[i] for k, v in parts.items()}) for i in range(sections)]
    if isinstance(batch, (tuple, list)):
        parts = [_chunk(b, sections, rows) for b in batch]
        return [_like_sequence(batch, [p[i] for p in parts]) for i in range(sections)]
    return [batch] * sections


def split_batch(batch: Any, accumulate: int) -> list[tuple[Any, float]]:
    """Split a batch of ``B`` examples (:func:`batch_size_of`) into ``accumulate`` micro-batches of ``m_i``
    examples with weights ``m_i / B``, keeping the batch's structure (tuples, named tuples, lists, mappings):
    its tensors and its lists of ``B`` non-tensor values are split along the first dimension, other leaves are
    in every micro-batch unchanged.

    Empty micro-batches (a last batch smaller than ``accumulate``) are left out.

    :raises DataError: the batch cannot be sized (:func:`batch_size_of`).
    """
    if accumulate == 1:
        return [(batch, 1.0)]
    total = batch_size_of(batch)
    micro = [m for m in _chunk(batch, accumulate, total) if batch_size_of(m) > 0]
    return [(m, batch_size_of(m) / total) for m in micro]


def micro_batch_origin(step: int, player: str, index: int, micro_batches: list[tuple[Any, float]]) -> str:
    """What :func:`~hybridpgm.data.validation.batch_origin` says of micro-batch ``index`` of a step's batch
    (``"training data, step 3, player 'elbo'"``, then ``", micro-batch 3 of 4 (1 row)"`` when the batch was
    split)."""
    origin = f"training data, step {step}, player {player!r}"
    if len(micro_batches) == 1:
        return origin
    rows = batch_size_of(micro_batches[index][0])
    return f"{origin}, micro-batch {index + 1} of {len(micro_batches)} ({rows} row{'s' if rows != 1 else ''})"


#: what torch's batch norm says of a training batch of one row
_TORCH_ONE_ROW = "Expected more than 1 value per channel when training"


def one_row_micro_batch_error(error: Exception, module: torch.nn.Module, micro_batches: list[tuple[Any, float]],
                              index: int, *, step: int, accumulate: int, batch_size: int | None) -> ConfigError | None:
    """The error to raise instead of ``error`` when micro-batch ``index`` failed because accumulation left it
    one row under batch normalisation (``None`` when that is not the case): the batch has two rows or more,
    the micro-batch one, the module holds a torch batch norm in training mode, and ``error`` is a model's
    :class:`ConfigError` (a :class:`~hybridpgm.errors.DataError` is about values, not rows) or torch's own
    refusal of one row.  The message names the micro-batch, the batch size, ``accumulate`` and the sizes
    of the micro-batches, and the fix: a larger batch or a smaller ``accumulate`` (``drop_last=True`` for
    an epoch's last, incomplete batch).

    :param batch_size: ``fit``'s ``batch_size`` (``None``: unknown, the batch is taken as a full one).
    """
    if not ((isinstance(error, ConfigError) and not isinstance(error, DataError))
            or (type(error) is ValueError and _TORCH_ONE_ROW in str(error))):
        return None
    sizes = [batch_size_of(m) for m, _ in micro_batches]
    rows = sum(sizes)
    if len(sizes) < 2 or sizes[index] != 1 or rows < 2:
        return None
    layers = [name or type(m).__name__ for name, m in module.named_modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers:
        return None
    shown = shown_items(layers, 3)
    split = (f"accumulate={accumulate} splits it into micro-batches of {', '.join(map(str, sizes))} rows"
             if len(sizes) == accumulate else
             f"accumulate={accumulate} splits it into {len(sizes)} micro-batches of one row")
    last = batch_size is not None and rows < batch_size
    what = (f"the epoch's last, incomplete batch has {rows} rows (batch_size={batch_size})" if last
            else f"the batch has {rows} rows (batch_size={rows})")
    fix = (f"pass drop_last=True to leave that batch out, choose a batch_size whose last batch has at least "
           f"{2 * accumulate} rows, or lower accumulate to at most {rows // 2}" if last else
           f"use a batch_size of at least {2 * accumulate} (2 x accumulate; a multiple of accumulate splits evenly) "
           f"or lower accumulate to at most {rows // 2}")
    return ConfigError(
        f"micro-batch {index + 1} of {len(sizes)} at step {step} has one row: {what}, and {split}, but batch "
        f"normalisation in training mode ({shown}) needs at least two rows per micro-batch; {fix}. "
        f"The model said: {error}")
