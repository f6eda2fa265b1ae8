"""Small networks the command-line recipes train, registered for :func:`hybridpgm.load`."""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.graphs.crf import CRFHead, LinearChainCRF
from hybridpgm.serialization import serializable

__all__ = ["CRFTagger"]


@serializable
class CRFTagger(nn.Module):
    """Embedding, a residual 1-D convolution, unary scores, then a linear-chain CRF.

    :param int num_symbols: ``V``, size of the input vocabulary.
    :param int num_labels: ``L``.
    :param int hidden: embedding and channel width.
    """

    def __init__(self, num_symbols: int, num_labels: int, hidden: int = 32):
        super().__init__()
        self.embed = nn.Embedding(num_symbols, hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
        self.out = nn.Linear(hidden, num_labels)
        self.head = CRFHead(num_labels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> LinearChainCRF:
        """The :class:`~hybridpgm.graphs.LinearChainCRF` with batch shape ``N`` over label sequences ``N x T``.

        The embeddings past a sequence's length are zeroed before the convolution, so a sequence is scored as if it
        were alone: the padding's symbols and the batch it is in change nothing.

        :param x: ``N x T`` symbol ids.
        :param lengths: ``N`` sequence lengths."""
        h = self.embed(x)
        inside = torch.arange(x.shape[-1], device=x.device) < lengths.to(x.device)[:, None]  # N x T
        h = h * inside[..., None].to(h.dtype)  # the convolution reads one step past the end: zeros, as alone
        h = h + torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return self.head(self.out(h), lengths)
