"""Small networks the command-line recipes train, registered for :func:`hybridpgm.load`."""

from __future__ import annotations

import torch
from torch import nn

from hybridpgm.checks import check_device
from hybridpgm.errors import DataError
from hybridpgm.graphs.crf import CRFHead, LinearChainCRF
from hybridpgm.serialization import serializable
from hybridpgm.train.deferred_checks import check_or_defer

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

        :param x: ``N x T`` symbol ids, integers in ``0..V-1``.
        :param lengths: ``N`` sequence lengths, integers (in ``1..T``, as :class:`~hybridpgm.graphs.LinearChainCRF`
            checks them).
        :raises DataError: ``x`` is not an ``N x T`` integer tensor or holds an id outside ``0..V-1`` (a vocabulary
            of another size: the value check costs one host read, and inside :func:`hybridpgm.fit`'s step none
            of its own, :func:`~hybridpgm.train.deferred_checks.check_or_defer`), or ``lengths`` is not an ``N``
            integer tensor.  Ids created under :func:`torch.inference_mode` and run with grad mode on are cloned
            (:func:`~hybridpgm.autograd_scope.usable_with_grad`).
        :raises DeviceError: ``x`` is not on the parameters' device."""
        x = self._check_inputs(x, lengths)
        h = self.embed(x)
        inside = torch.arange(x.shape[-1], device=x.device) < lengths.to(x.device)[:, None]  # N x T
        h = h * inside[..., None].to(h.dtype)  # the convolution reads one step past the end: zeros, as alone
        h = h + torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return self.head(self.out(h), lengths)

    def _check_inputs(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` as the embedding takes it (``int64`` or ``int32``; another integer dtype converted to ``int64``),
        after :meth:`forward`'s checks: shapes and dtypes from metadata; the ids' range by
        :func:`~hybridpgm.train.deferred_checks.check_or_defer` (at once outside :func:`hybridpgm.fit`'s step, at
        its one read per step inside), the ids then clamped into the vocabulary so that the embedding never
        indexes out of it (on CUDA a device-side assert) before a deferred check raises."""
        vocabulary = self.embed.num_embeddings
        expected = f"an N x T tensor of integer symbol ids in 0..{vocabulary - 1} ({vocabulary} symbols)"
        if not isinstance(x, torch.Tensor):
            raise DataError(f"CRFTagger symbol ids 'x' must be {expected}, got {type(x).__name__}")
        if x.dim() != 2 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise DataError(f"CRFTagger symbol ids 'x' must be {expected}, got shape {tuple(x.shape)} and dtype "
                            f"{x.dtype}")
        if not isinstance(lengths, torch.Tensor) or lengths.shape != x.shape[:1] or lengths.is_floating_point() \
                or lengths.is_complex() or lengths.dtype == torch.bool:
            got = (f"shape {tuple(lengths.shape)} and dtype {lengths.dtype}" if isinstance(lengths, torch.Tensor)
                   else type(lengths).__name__)
            raise DataError(f"CRFTagger sequence lengths 'lengths' must be a tensor of shape ({x.shape[0]},) "
                            f"(one integer length per row of x {tuple(x.shape)}), got {got}")
        check_device(x, self.embed.weight, "CRFTagger symbol ids 'x'")
        if x.dtype not in (torch.int64, torch.int32):  # uint8 ... (torch compares no uint16/32/64): exactly
            x = x.long()

        def out_of_range() -> DataError:
            row, position = (int(i) for i in ((x < 0) | (x >= vocabulary)).nonzero()[0])
            return DataError(f"CRFTagger symbol ids 'x' must lie in 0..{vocabulary - 1} (the tagger's vocabulary "
                             f"of {vocabulary} symbols), got {int(x[row, position])} at row {row}, position "
                             f"{position} of the x given (in fit, a batch) (ids in [{int(x.min())}, "
                             f"{int(x.max())}])")

        check_or_defer(((x >= 0) & (x < vocabulary)).all(), out_of_range,
                       what=f"CRFTagger symbol ids in 0..{vocabulary - 1}")
        # deferred inside fit's step (one read per step): clamped so the embedding never indexes out of the
        # vocabulary first; a new tensor, a normal one also from an inference tensor (the embedding saves x)
        return x.clamp(0, vocabulary - 1)
