"""Binarization of grey-level images in [0, 1].

* ``"static"``: one Bernoulli draw per pixel with a fixed seed, the protocol of
  Salakhutdinov & Murray [1] used for binarized MNIST likelihoods;
* ``"dynamic"``: a fresh draw every time an example is read during training,
  which regularises [2]; evaluation splits are then binarized statically.

References:

1. R. Salakhutdinov, I. Murray, *On the Quantitative Analysis of Deep Belief
   Networks*, ICML 2008.
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from hybridpgm.checks import seed_of
from hybridpgm.data.validation import as_model_dtype, check_finite
from hybridpgm.errors import DataError
from hybridpgm.summary_repr import array_text

__all__ = ["DrawnExamples", "DynamicBinarized", "binarize_static"]


def _check_unit(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as floating point, after checking it is finite and in [0, 1].

    Integer and bool tensors are converted to the default floating dtype by the
    rule of :func:`~hybridpgm.data.validation.as_model_dtype`; floating ones
    keep their dtype.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} is a {type(x).__name__}, expected a tensor of grey levels in [0, 1]")
    if not x.is_floating_point():
        x = as_model_dtype(x, torch.get_default_dtype(), name)
    check_finite(x, name)
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise DataError(f"{name}: binarization needs values in [0, 1]; got range [{float(x.min())}, {float(x.max())}]")
    return x


def binarize_static(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One Bernoulli draw per entry of ``x`` (``N x D`` in [0, 1]) with a fixed seed.

    :param x: the probabilities, of any shape (``N x D`` for a dataset), in [0, 1].
    :param int seed: seeds the draws (an integer in torch's seed range ``[-2**63, 2**64 - 1]``; ``bool`` and
        floats refused).
    :raises DataError: NaN/inf, or values outside [0, 1].
    :raises ConfigError: ``seed`` is not an integer, or is outside torch's seed range.
    """
    x = _check_unit(x, "binarize_static input")
    seed = seed_of(seed, "binarize_static seed")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


class DrawnExamples(list):
    """The examples of one batched read of a :class:`DynamicBinarized` (or of fit's
    :class:`~hybridpgm.train.batches.TensorData`), the ``list`` that torch's :class:`~torch.utils.data.DataLoader`
    expects from ``__getitems__`` (each example as ``__getitem__`` gives it: ``x_bin[i]`` or
    ``(x_bin[i], y[i])``), carrying the batch they were drawn as in :attr:`batch`.

    torch's ``default_collate`` stacks the examples again (any ``num_workers``); hybridpgm's collation
    (:func:`~hybridpgm.train.batches.collate_getitems`, :func:`~hybridpgm.data.data_loader`) takes
    :attr:`batch` as it is.

    :param batch: ``x_bin`` ``[B, ...]``, or a tuple of tensors ``[B, ...]`` (the pair ``(x_bin, y)``), whose
        examples are the tuples of their rows.
    """

    __slots__ = ("batch",)

    def __init__(self, batch):
        if isinstance(batch, torch.Tensor):
            super().__init__(batch.unbind(0))
        else:
            super().__init__(zip(*(t.unbind(0) for t in batch)))
        #: the batch the examples were drawn as
        self.batch = batch


class DynamicBinarized(Dataset):
    """A dataset that draws ``x_bin ~ Bernoulli(x)`` at every read.

    Draws use the global torch RNG, so :func:`hybridpgm.fit` runs seeded by
    ``seed`` (and resumed from a checkpoint) see the same draws.  A batch is drawn at once (:meth:`draw`, which
    ``fit`` calls); ``__getitems__`` returns that batch's examples, torch's list of examples
    (:class:`DrawnExamples`, carrying the batch), so a plain :class:`~torch.utils.data.DataLoader` (any
    ``num_workers``) collates them as it collates ``__getitem__``'s.

    :param x: ``N x D`` grey levels in [0, 1]; NaN/inf or values outside
        [0, 1] raise :class:`~hybridpgm.errors.DataError`.
    :param y: optional ``N`` labels, returned as ``(x_bin, y)`` pairs.
    :raises DataError: ``x`` is not a tensor with a leading example dimension, or ``y`` is not a
        tensor of ``N`` labels.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None):
        x = _check_unit(x, "DynamicBinarized input")
        if x.dim() == 0:
            raise DataError("DynamicBinarized input is a 0-d tensor, expected N x D grey levels in [0, 1]")
        if y is not None and (not isinstance(y, torch.Tensor) or y.dim() == 0 or y.shape[0] != x.shape[0]):
            got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else f"a {type(y).__name__}"
            raise DataError(f"DynamicBinarized labels y: got {got}, expected a tensor of {x.shape[0]} labels "
                            f"to match x of shape {tuple(x.shape)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        """The tensors' shapes and dtypes, not their values: ``DynamicBinarized(x=[1000, 64] torch.float32)``."""
        labels = "" if self.y is None else f", y={array_text(self.y)}"
        return f"DynamicBinarized(x={array_text(self.x)}{labels})"

    def __getitem__(self, index: int):
        sample = torch.bernoulli(self.x[index])
        return sample if self.y is None else (sample, self.y[index])

    def draw(self, indices):
        """The examples ``indices`` drawn at once, as one batch: ``x_bin [B, ...]``, or ``(x_bin, y[indices])``.

        :param indices: a sequence of ``B`` example indices, or a 1-d integer tensor of them.
        """
        index = torch.as_tensor(indices, dtype=torch.long, device=self.x.device)  # not torch's default device
        sample = torch.bernoulli(self.x[index])
        return sample if self.y is None else (sample, self.y[index])

    def __getitems__(self, indices) -> DrawnExamples:
        """The examples ``indices`` as torch's list of examples, drawn at once (:meth:`draw`, kept in
        :attr:`DrawnExamples.batch`)."""
        return DrawnExamples(self.draw(indices))
