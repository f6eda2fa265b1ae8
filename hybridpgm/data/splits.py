"""Containers for data sets: a split and a train/validation/test triple."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hybridpgm.summary_repr import array_text

__all__ = ["ImageDataset", "Split"]


@dataclass(frozen=True, eq=False)
class Split:
    """One split of an :class:`ImageDataset`.

    :param x: the images, ``N x D`` (flattened), float32 or float64 (:func:`~hybridpgm.data.registry.image_dtype`).
    :param y: the labels, ``N`` int64.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        """The tensors' shapes and dtypes, not their values (a notebook showed every pixel)."""
        return f"Split(x={array_text(self.x)}, y={array_text(self.y)})"


@dataclass(frozen=True)
class ImageDataset:
    """An image data set with its three splits.

    :param name: the registry name (``"digits"``, ``"fashion-mnist"``).
    :param image_shape: ``(H, W)`` of one image; ``x`` holds ``H * W`` features.
    :param train: the training :class:`Split`.
    :param valid: the validation :class:`Split`.
    :param test: the test :class:`Split`.
    :param binarize: ``None`` (the default), ``"static"`` or ``"dynamic"`` (see
        :mod:`hybridpgm.data.binarize`).
    """

    name: str
    image_shape: tuple[int, int]
    train: Split
    valid: Split
    test: Split
    binarize: str | None = None

    def __repr__(self) -> str:
        """A summary of constant size: the name, the image shape, each split's (:class:`Split`'s ``repr``) and
        the binarisation."""
        return (f"ImageDataset(name={self.name!r}, image_shape={self.image_shape!r}, train={self.train!r}, "
                f"valid={self.valid!r}, test={self.test!r}, binarize={self.binarize!r})")

    @property
    def num_features(self) -> int:
        return self.image_shape[0] * self.image_shape[1]
