"""Conditional maximum likelihood for a neural linear-chain CRF, as a :func:`hybridpgm.fit` objective.

A tagger maps a batch of padded sequences to a
:class:`~hybridpgm.graphs.LinearChainCRF` over their labels; the loss is the
negative conditional log-likelihood per sequence [1]

.. math::

    \\ell(\\theta) = -\\frac1B \\sum_{b=1}^B \\log p_\\theta(y_b \\mid x_b)
    = \\frac1B \\sum_b \\big(\\log Z_\\theta(x_b) - s_\\theta(x_b, y_b)\\big),

with the partition function from the forward algorithm.

References:

1. J. Lafferty, A. McCallum, F. Pereira, *Conditional Random Fields:
   Probabilistic Models for Segmenting and Labeling Sequence Data*, ICML 2001.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridpgm.errors import DataError

__all__ = ["CRFLikelihood", "token_accuracy"]


class CRFLikelihood:
    """One player, ``"crf"``, training every parameter of ``tagger``.

    :param tagger: a module called as ``tagger(x, lengths)`` returning a
        :class:`~hybridpgm.graphs.LinearChainCRF` with batch shape ``B``
        (e.g. a network ending in a :class:`~hybridpgm.graphs.CRFHead`).
        Batches are ``(x, y, lengths)``: inputs ``B x T x ...``, labels
        ``B x T`` (long) and true lengths ``B``.
    """

    def __init__(self, tagger: nn.Module):
        self.module = tagger

    def players(self) -> dict[str, list[nn.Parameter]]:
        return {"crf": list(self.module.parameters())}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise DataError(f"CRFLikelihood batches are (x, y, lengths), got {type(batch).__name__} "
                            f"of {len(batch) if isinstance(batch, (tuple, list)) else 1} element(s)")
        x, y, lengths = batch
        return -self.module(x, lengths).log_prob(y).mean()


def token_accuracy(pred: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> float:
    """Fraction of the real (unpadded) tokens whose label ``pred`` gets right.

    :param pred: ``B x T`` predicted labels; :param y: ``B x T`` true labels;
    :param lengths: ``B`` sequence lengths (positions past them are padding).
    """
    mask = torch.arange(y.shape[1], device=y.device) < lengths[:, None]
    return float(((pred == y) & mask).sum() / mask.sum())
