"""Generators and discriminators for the adversarial objectives.

Small networks for 2-D toy data and for 8x8 / 28x28 images: MLPs
(:class:`MLPGenerator`, :class:`MLPDiscriminator`) and DCGAN-style [1]
convolutional nets (:class:`ConvGenerator`, :class:`ConvDiscriminator`).  The
image networks read and write *flattened* images (``batch x H*W``), the layout
of :mod:`hybridpgm.data`, and reshape inside.

Every generator has ``noise_dim`` and ``out_shape``, every discriminator
``in_shape``: :class:`~hybridpgm.infer.adversarial.GAN` and the other
objectives compare them at construction.

References:

1. A. Radford, L. Metz, S. Chintala, *Unsupervised Representation Learning with
   Deep Convolutional Generative Adversarial Networks*, ICLR 2016.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.nn import ACTIVATIONS, mlp
from hybridpgm.serialization import serializable

__all__ = ["ConvDiscriminator", "ConvGenerator", "MLPDiscriminator", "MLPGenerator", "gan_networks"]


def _shape(shape: int | Sequence[int], what: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ModelSpecError(f"{what} must be positive integers, got {shape}")
    return shape


@serializable
class MLPGenerator(nn.Module):
    """:math:`x = G_\\theta(z)`: an MLP from noise ``batch x noise_dim`` to ``batch x out_shape``.

    :param noise_dim: input (noise) dimension.
    :param out_shape: event shape of the samples, e.g. ``(2,)`` or ``(64,)``.
    :param hidden: hidden widths.
    :param activation: hidden non-linearity (:data:`hybridpgm.nn.ACTIVATIONS`).
    :param out_activation: e.g. ``"sigmoid"`` for images in [0, 1]; ``None`` for real data.
    """

    def __init__(self, noise_dim: int, out_shape: int | Sequence[int], hidden: Sequence[int] = (128, 128),
                 activation: str = "relu", out_activation: str | None = None, batch_norm: bool = False):
        super().__init__()
        self.noise_dim = _shape(noise_dim, "noise_dim")[0]
        self.out_shape = _shape(out_shape, "out_shape")
        self.net = mlp([self.noise_dim, *hidden, math.prod(self.out_shape)], activation, "default",
                       batch_norm, out_activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[:-1] + self.out_shape)


@serializable
class MLPDiscriminator(nn.Module):
    """:math:`D_\\phi(x)`: an MLP from ``batch x in_shape`` to logits ``batch``
    (or ``batch x out_dim`` when ``out_dim > 1``, e.g. an InfoGAN code posterior).

    :param in_shape: event shape of the inputs.
    :param hidden: hidden widths.
    :param activation: hidden non-linearity, leaky ReLU by default [1].
    :param out_dim: outputs per example.
    """

    def __init__(self, in_shape: int | Sequence[int], hidden: Sequence[int] = (128, 128),
                 activation: str = "leaky_relu", out_dim: int = 1):
        super().__init__()
        self.in_shape = _shape(in_shape, "in_shape")
        self.out_dim = out_dim
        self.net = mlp([math.prod(self.in_shape), *hidden, out_dim], activation, "default")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.reshape(x.shape[: x.dim() - len(self.in_shape)] + (-1,)))
        return out.squeeze(-1) if self.out_dim == 1 else out


def _image_shape(image_shape: int | Sequence[int]) -> tuple[int, int]:
    shape = _shape(image_shape, "image_shape")
    shape = shape * 2 if len(shape) == 1 else shape
    if len(shape) != 2 or shape[0] % 4 or shape[1] % 4:
        raise ModelSpecError(f"convolutional GAN nets need an image shape (H, W) divisible by 4 "
                             f"(8x8, 28x28, ...), got {shape}")
    return shape


@serializable
class ConvGenerator(nn.Module):
    """DCGAN-style generator [1]: noise -> ``2w x H/4 x W/4`` -> two stride-2
    transposed convolutions -> a ``H x W`` image, returned flattened ``batch x H*W``.

    :param noise_dim: noise dimension.
    :param image_shape: ``(H, W)`` with both divisible by 4 (8x8 digits, 28x28 Fashion-MNIST).
    :param width: channels of the last hidden layer ``w``.
    :param out_activation: ``"sigmoid"`` for intensities in [0, 1].
    """

    def __init__(self, noise_dim: int, image_shape: int | Sequence[int] = (8, 8), width: int = 32,
                 out_activation: str | None = "sigmoid"):
        super().__init__()
        self.noise_dim = _shape(noise_dim, "noise_dim")[0]
        self.image_shape = _image_shape(image_shape)
        self.out_shape = (math.prod(self.image_shape),)
        h, w = self.image_shape[0] // 4, self.image_shape[1] // 4
        self._base = (2 * width, h, w)
        self.project = nn.Sequential(nn.Linear(self.noise_dim, 2 * width * h * w), nn.BatchNorm1d(2 * width * h * w),
                                     nn.ReLU())
        layers: list[nn.Module] = [nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.ConvTranspose2d(width, 1, 4, 2, 1)]
        if out_activation is not None:
            layers.append(ACTIVATIONS[out_activation]())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).reshape(-1, *self._base)
        return self.deconv(h).flatten(1)


@serializable
class ConvDiscriminator(nn.Module):
    """DCGAN-style discriminator [1]: two stride-2 convolutions with leaky ReLU,
    then a linear layer to the logit ``batch`` (or ``batch x out_dim``).

    :param image_shape: ``(H, W)``; the input is the flattened image ``batch x H*W``.
    :param width: channels of the first convolution.
    :param out_dim: outputs per example.
    """

    def __init__(self, image_shape: int | Sequence[int] = (8, 8), width: int = 32, out_dim: int = 1):
        super().__init__()
        self.image_shape = _image_shape(image_shape)
        self.in_shape = (math.prod(self.image_shape),)
        self.out_dim = out_dim
        h, w = self.image_shape[0] // 4, self.image_shape[1] // 4
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * h * w, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.reshape(-1, 1, *self.image_shape))
        return out.squeeze(-1) if self.out_dim == 1 else out


def gan_networks(kind: str, data_shape: int | Sequence[int], noise_dim: int = 16, hidden: Sequence[int] = (128, 128),
                 image_shape: Sequence[int] | None = None, width: int = 32,
                 out_activation: str | None = None) -> tuple[nn.Module, nn.Module]:
    """A matching ``(generator, discriminator)`` pair.

    :param kind: ``"mlp"`` or ``"conv"`` (``image_shape`` required for ``"conv"``).
    :param data_shape: event shape of the data (``2`` for the ring, ``64`` for digits).
    :param out_activation: the generator's output non-linearity (``"sigmoid"`` for images).
    """
    if kind == "mlp":
        return (MLPGenerator(noise_dim, data_shape, hidden, out_activation=out_activation),
                MLPDiscriminator(data_shape, hidden))
    if kind == "conv":
        if image_shape is None:
            raise ModelSpecError("gan_networks('conv', ...) needs image_shape=(H, W)")
        gen = ConvGenerator(noise_dim, image_shape, width, out_activation=out_activation)
        if gen.out_shape != _shape(data_shape, "data_shape"):
            raise ModelSpecError(f"image_shape {tuple(image_shape)} gives {gen.out_shape[0]} pixels, "
                                 f"the data have shape {_shape(data_shape, 'data_shape')}")
        return gen, ConvDiscriminator(image_shape, width)
    raise ModelSpecError(f"gan_networks kind must be 'mlp' or 'conv', got {kind!r}")
