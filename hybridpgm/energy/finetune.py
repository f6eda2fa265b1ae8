r"""Supervised and reconstruction objectives for fine-tuning an unrolled DBN with :func:`hybridpgm.fit`.

* :class:`ReconstructionObjective` -- an autoencoder's reconstruction loss
  [1]: the Bernoulli cross-entropy :math:`-\sum_i v_i \log \hat v_i + (1-v_i)\log(1-\hat v_i)`
  (or half the squared error for real-valued data), summed over the units and
  averaged over the batch.
* :class:`ClassificationObjective` -- cross-entropy of a classifier on ``(x, y)`` batches.

Both have one player, ``"model"``, whose parameters are all of the network's.

References:

1. G. E. Hinton, R. R. Salakhutdinov, "Reducing the dimensionality of data with
   neural networks", Science, 2006.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybridpgm.errors import ConfigError, DataError

__all__ = ["ClassificationObjective", "ReconstructionObjective"]


class _OnePlayer:
    player = "model"

    def __init__(self, module: nn.Module):
        self.module = module

    def players(self) -> dict[str, list[nn.Parameter]]:
        return {self.player: list(self.module.parameters())}

    def _check_player(self, player: str) -> None:
        if player != self.player:
            raise ConfigError(f"{type(self).__name__} has one player {self.player!r}, got {player!r}")


class ReconstructionObjective(_OnePlayer):
    """Reconstruction loss of an autoencoder whose ``forward(x)`` returns logits (``likelihood="bernoulli"``)
    or means (``"gaussian"``), ``batch x D`` like ``x``."""

    def __init__(self, autoencoder: nn.Module, likelihood: str = "bernoulli"):
        super().__init__(autoencoder)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        self._check_player(player)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        out = self.module(x)
        if out.shape != x.shape:
            raise DataError(f"autoencoder output shape {tuple(out.shape)} differs from input shape {tuple(x.shape)}")
        if self.likelihood == "bernoulli":
            per_unit = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_unit = (out - x) ** 2 / 2
        return per_unit.reshape(x.shape[0], -1).sum(-1).mean()


class ClassificationObjective(_OnePlayer):
    """Cross-entropy of a classifier (``forward(x)`` returns ``batch x C`` logits) on batches ``(x, y)``."""

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        self._check_player(player)
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataError("ClassificationObjective needs batches (x, y); pass data=(x, y) to fit")
        x, y = batch[0], batch[1]
        return F.cross_entropy(self.module(x), y)
