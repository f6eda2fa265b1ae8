"""Containers for data sets: a split and a train/validation/test triple."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageDataset", "Split"]


@dataclass(frozen=True, eq=False)
class Split:
    """One split: ``x`` is ``N x D`` float32 (images flattened), ``y`` ``N`` int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class ImageDataset:
    """An image data set with its three splits.

    :ivar name: the registry name (``"digits"``, ``"fashion-mnist"``).
    :ivar image_shape: ``(H, W)`` of one image; ``x`` holds ``H * W`` features.
    :ivar binarize: ``None``, ``"static"`` or ``"dynamic"`` (see
        :mod:`hybridpgm.data.binarize`).
    """

    name: str
    image_shape: tuple[int, int]
    train: Split
    valid: Split
    test: Split
    binarize: str | None = None

    @property
    def num_features(self) -> int:
        return self.image_shape[0] * self.image_shape[1]
