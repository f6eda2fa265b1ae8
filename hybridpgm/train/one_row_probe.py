"""Whether a batch norm's input rows follow the batch's: a probe of the objective on a batch of one row.

:func:`~hybridpgm.train.one_row_batches.refusing_one_row_last_batch` refuses, at :func:`~hybridpgm.train.trainer.fit`'s
first step, a batch norm in training mode whose input has one row per example of the first micro-batch (``[m, C]``
on :math:`m` rows): at an epoch's last batch of one row it would hold one value per channel, which torch refuses.
One shape does not tell a layer fed by the rows from one fed a tensor of a fixed size that happens to have
:math:`m` rows (a learned constant ``[B, C]``, a prior draw of :math:`B` rows, with :math:`B` the batch size): the
last batch does not reach the second, which normalises its :math:`B` rows there too.

A second batch size tells them apart, and the size that matters is one row: :func:`batch_norms_on_one_row` runs
each player's loss on a batch of one example of the data set and records, for each batch norm, whether it met an
input of one value per channel (``size(0) * prod(size(2:)) == 1``; the probe stops there, before torch's refusal)
or took every input it was given.  The probe runs under :func:`~hybridpgm.infer.particle_probe.probing` (no random
numbers used up, no module buffer changed: a run the probe accepts trains bit for bit as before) and Pyro's
:func:`~pyro.poutine.block`; whatever else it raises (a model's own refusal of one row, a loss that needs more
rows) ends that player's probe and leaves the layers it did not reach to the shape rule.  It reads one example
and runs one forward pass per player, once per ``fit`` call, and only where the run reaches such a batch with a
batch norm in training mode.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pyro.poutine as poutine
import torch

from hybridpgm.train.batches import first_batch, move_to

__all__ = ["batch_norms_on_one_row"]


class _OneValuePerChannel(Exception):
    """Raised by the probe's hook on an input of one value per channel: the probe has learnt what it asked."""


def _hook(name: str, seen: dict[str, bool]):
    def hook(_, args):
        shape = tuple(args[0].shape) if args and torch.is_tensor(args[0]) else ()
        if len(shape) >= 2 and shape[0] * math.prod(shape[2:]) == 1:
            seen[name] = False
            raise _OneValuePerChannel(name)
        seen.setdefault(name, True)
    return hook


def batch_norms_on_one_row(objective: Any, players: Iterable[str], layers: list[tuple[str, torch.nn.Module]],
                           dataset: Any, device: torch.device | str | None) -> dict[str, bool]:
    """Run each of ``players``' losses on a batch of the first example of ``dataset`` (on ``device``) and say,
    for each of ``layers`` (``(name, batch norm)``) it reached, whether the layer took every input (``True``) or
    met one of one value per channel (``False``).

    :param objective: the :func:`~hybridpgm.fit` objective; its ``loss(player, batch)`` runs, gradients on (a
        loss may take gradients itself), under :func:`~hybridpgm.infer.particle_probe.probing` of its ``module``.
    :returns: ``{name: took_it}``; a layer no loss reached before it ended is absent."""
    from hybridpgm.infer.particle_probe import probing  # here: hybridpgm.infer imports the graphs, which import train

    seen: dict[str, bool] = {}
    handles = [layer.register_forward_pre_hook(_hook(name, seen)) for name, layer in layers]
    try:
        batch = move_to(first_batch(dataset, 1), device)
        for player in players:
            try:
                with probing(objective.module), poutine.block():
                    objective.loss(player, batch)
            except Exception:  # noqa: BLE001 - the hook's stop, or any refusal of one row: the shape rule stands
                continue
    finally:
        for handle in handles:
            handle.remove()
    return seen
