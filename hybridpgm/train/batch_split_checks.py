"""Whether :func:`~hybridpgm.train.trainer.fit` may split a batch: into micro-batches (``accumulate > 1``) or into
the shards of several ranks (``torchrun``).

Accumulation and data parallelism average the losses of parts of the batch, which is exact only when the loss on
a batch is the size-weighted mean of the losses on its parts.  :func:`check_decomposable` refuses, before any
step runs, to split the batch of an objective that declares it is not so (its ``decomposable`` attribute); and
:func:`batch_norm_warning` words the warning ``fit`` gives for a model holding a layer in training mode whose
output on a row depends on the other rows of its batch (batch normalisation, the scaling onto a KISS-GP grid).
"""

from __future__ import annotations

import sys

import torch

from hybridpgm.checks import shown_items
from hybridpgm.errors import ConfigError
from hybridpgm.train.objective import Objective

__all__ = ["batch_norm_warning", "check_decomposable"]


def check_decomposable(objective: Objective, accumulate: int, world_size: int) -> None:
    """Refuse to split the batch of an objective whose ``decomposable`` attribute is false
    (:mod:`hybridpgm.train.objective`): accumulation and data parallelism average the losses of parts of
    the batch, which for such an objective is another objective than the loss of the whole batch.

    :raises ConfigError: ``accumulate > 1`` or ``world_size > 1``, naming the objective, the option and why."""
    if getattr(objective, "decomposable", True) or (accumulate == 1 and world_size == 1):
        return
    splits = []
    if accumulate > 1:
        splits.append(f"accumulate={accumulate} would split each batch into {accumulate} micro-batches")
    if world_size > 1:
        splits.append(f"{world_size} ranks (torchrun) would each take a shard of the batch")
    raise ConfigError(
        f"{type(objective).__name__} is not decomposable (its decomposable attribute is False): its loss on a batch "
        f"is not the size-weighted mean of its losses on parts of the batch, yet {' and '.join(splits)}, which "
        "would train the mean of the parts' losses instead of the loss of the batch; "
        f"{getattr(objective, 'not_decomposable_remedy', None) or 'train it with accumulate=1 in one process'}")


def _batch_norm_causes(module: torch.nn.Module, accumulate: int, world_size: int) -> str | None:
    """The batch-norm sentence of :func:`batch_norm_warning` (``None`` when it does not apply)."""
    layers = [(name, m) for name, m in module.named_modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    unsynced = [name for name, m in layers if not isinstance(m, torch.nn.SyncBatchNorm)]
    causes = []
    if accumulate > 1 and layers:
        causes.append(f"with accumulate={accumulate} each micro-batch is normalised with its own statistics (and "
                      "updates the running statistics once)")
    if world_size > 1 and unsynced:
        causes.append(f"with {world_size} ranks each rank normalises its own shard (fit does not synchronise batch "
                      "statistics between ranks)")
    if not causes:
        return None
    return (f"the model holds batch normalisation in training mode ({_shown([name for name, _ in layers])}): "
            f"{'; '.join(causes)}, so the update differs from that of one pass over the whole batch in one process "
            "(accumulation and data parallelism are exact only for models whose loss on a batch is the mean of "
            "per-example losses); train with accumulate=1 in one process for that update, or use a normalisation "
            "that does not depend on the batch (LayerNorm, GroupNorm)")


def _grid_scaling_causes(module: torch.nn.Module, accumulate: int, world_size: int) -> str | None:
    """The grid-scaling sentence of :func:`batch_norm_warning` (``None`` when it does not apply): GPyTorch's
    ``ScaleToBounds`` and its subclasses here (:class:`~hybridpgm.gp.grid_scaling.ScaleToGrid`,
    :class:`~hybridpgm.gp.grid_scaling.RunningScaleToGrid`) map a training batch onto the KISS-GP grid with a range
    that includes that batch's own minimum and maximum."""
    grid = sys.modules.get("gpytorch.utils.grid")  # not imported: no such layer can be in the model
    if grid is None or (accumulate == 1 and world_size == 1):
        return None
    layers = [(name, m) for name, m in module.named_modules() if isinstance(m, grid.ScaleToBounds) and m.training]
    if not layers:
        return None
    causes = []
    if accumulate > 1:
        causes.append(f"with accumulate={accumulate} each micro-batch is mapped with a range that includes its own "
                      "minimum and maximum (and updates the recorded range once)")
    if world_size > 1:
        causes.append(f"with {world_size} ranks each rank maps its own shard with its own range and records its own "
                      "running range (fit does not synchronise it between ranks)")
    return (f"the model scales its features onto the KISS-GP grid with the batch's range in training mode "
            f"({_shown([name for name, _ in layers])}, {type(layers[0][1]).__name__}): {'; '.join(causes)}, so a "
            "row's grid position, hence the loss, depends on the other rows of its part, and the update differs "
            "from that of one pass over the whole batch in one process; train with accumulate=1 in one process for "
            "that update")


def _shown(names: list[str]) -> str:
    """At most three module names, quoted (``''`` is the module itself)."""
    return shown_items([name or "the module itself" for name in names], 3)


def batch_norm_warning(module: torch.nn.Module, accumulate: int, world_size: int) -> str | None:
    """The warning ``fit`` gives when ``accumulate > 1`` or ``world_size > 1`` and ``module`` holds a layer in
    training mode whose output on a row depends on the other rows of the batch (``None`` otherwise), so that
    splitting the batch into micro-batches or rank shards changes the update:

    * torch batch normalisation: each micro-batch, and each rank's shard, is normalised with its own
      statistics.  ``SyncBatchNorm`` synchronises the ranks' statistics, so only accumulation affects it;
    * scaling onto a KISS-GP grid (GPyTorch's ``ScaleToBounds``,
      :class:`~hybridpgm.gp.grid_scaling.ScaleToGrid`, :class:`~hybridpgm.gp.grid_scaling.RunningScaleToGrid` of a
      grid :class:`~hybridpgm.gp.SVDeepKernelGP`): features :math:`z` go to
      :math:`(z - a)\\,0.95\\,(u - l) / (b - a) + 0.95\\,l` with :math:`[a, b]` a range that includes the
      (micro-)batch's own minimum and maximum, so each micro-batch and each rank sees its own :math:`[a, b]`.

    Both causes, when present, are in the one message."""
    parts = [_batch_norm_causes(module, accumulate, world_size), _grid_scaling_causes(module, accumulate, world_size)]
    parts = [part for part in parts if part is not None]
    return "; and ".join(parts) if parts else None
