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

from hybridpgm.checks import check_device, layer_sizes, positive_int
from hybridpgm.data.validation import describe_origin
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.nn import ACTIVATIONS, mlp, on_rows
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.serialization import serializable
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["ConvDiscriminator", "ConvGenerator", "MLPDiscriminator", "MLPGenerator", "gan_networks"]


def _shape(shape: int | Sequence[int], what: str) -> tuple[int, ...]:
    """An event shape: one positive integer or a non-empty sequence of them (``bool`` and floats refused; a 1-D
    NumPy array or tensor of integers is read as its list, ``torch.Size`` as the tuple it is)."""
    if getattr(shape, "ndim", 0) == 1 and hasattr(shape, "tolist"):  # np.array([4]), torch.tensor([4])
        shape = shape.tolist()
    if not isinstance(shape, Sequence) or isinstance(shape, (str, bytes)):
        return (positive_int(shape, what, error=ModelSpecError),)
    if not shape:
        raise ModelSpecError(f"{what} must be positive integers, got {tuple(shape)}")
    return tuple(layer_sizes(shape, what, error=ModelSpecError))


def _dim(value, what: str) -> int:
    """One positive integer (a noise dimension, a width, a number of outputs)."""
    return positive_int(value, what, error=ModelSpecError)


def _activation(name: str | None, what: str) -> str | None:
    if name is not None and name not in ACTIVATIONS:
        raise ModelSpecError(f"unknown {what} {name!r}; choose from {sorted(ACTIVATIONS)}")
    return name


def _check_input(x, event: tuple[int, ...], module, what: str) -> None:
    """Free checks of a network's input: a tensor ending in ``event``, of the parameters' floating dtype
    (any dtype under autocast) and device."""
    require_tensor(x, f"{type(module).__name__} {what}")
    if x.dim() < len(event) or tuple(x.shape[x.dim() - len(event):]) != event:
        raise DataError(f"{type(module).__name__} {what} must have shape (batch, {', '.join(map(str, event))}), "
                        f"got {tuple(x.shape)}")
    weight = next(module.parameters())
    check_device(x, weight, f"{type(module).__name__} {what}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):  # autocast casts by itself
        raise DataError(f"{type(module).__name__} {what} has dtype {x.dtype}, the network computes in "
                        f"{weight.dtype}: convert it (x.to({weight.dtype})) or the network")


@serializable
class MLPGenerator(nn.Module):
    """:math:`x = G_\\theta(z)`: an MLP from noise ``batch_shape x noise_dim`` to ``batch_shape x out_shape``.

    :param noise_dim: input (noise) dimension.
    :param out_shape: event shape of the samples, e.g. ``(2,)`` or ``(64,)``.
    :param hidden: hidden widths.
    :param activation: hidden non-linearity (:data:`hybridpgm.nn.ACTIVATIONS`).
    :param out_activation: e.g. ``"sigmoid"`` for images in [0, 1]; ``None`` for real data.
    :param batch_norm: :class:`torch.nn.BatchNorm1d` after every hidden layer; the statistics of a training
        batch are those of all its rows, whatever the batch shape (``S x B x noise_dim`` is ``S * B`` rows).
    :raises ModelSpecError: a ``noise_dim`` that is not one positive integer, an ``out_shape`` or hidden
        width that is not positive integers (``bool`` and floats refused), or an unknown activation.
    """

    @keyword_only_soon("batch_norm")
    def __init__(self, noise_dim: int, out_shape: int | Sequence[int], hidden: Sequence[int] = (128, 128),
                 activation: str = "relu", out_activation: str | None = None, *, batch_norm: bool = False):
        super().__init__()
        self.noise_dim = _dim(noise_dim, "MLPGenerator noise_dim")
        self.out_shape = _shape(out_shape, "MLPGenerator out_shape")
        hidden = layer_sizes(hidden, "MLPGenerator hidden", error=ModelSpecError)
        self.net = mlp([self.noise_dim, *hidden, math.prod(self.out_shape)], activation, "default",
                       batch_norm, out_activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Samples ``batch_shape x out_shape`` from noise ``batch_shape x noise_dim`` (any batch shape, e.g.
        ``S x B x noise_dim`` under a particle plate: with batch norm its batch dimensions are one batch of
        ``S * B`` rows, see :func:`~hybridpgm.nn.on_rows`).

        :param z: noise ``batch_shape x noise_dim`` in the network's dtype.
        :raises DataError: ``z`` of the wrong last dimension or dtype.
        :raises DeviceError: ``z`` on another device than the network.
        :raises ConfigError: with batch norm in training mode, noise of one row (its batch statistics are not
            defined)."""
        _check_input(z, (self.noise_dim,), self, "noise 'z'")
        if any(isinstance(m, nn.BatchNorm1d) for m in self.net):
            _refuse_one_row(self, z, "MLPGenerator(batch_norm=True)")
        return on_rows(self.net, z).reshape(z.shape[:-1] + self.out_shape)


def _refuse_one_row(generator: nn.Module, z: torch.Tensor, name: str) -> None:
    """:class:`ConfigError` for noise ``z`` of one row given to a ``generator`` with batch norms in training mode.
    """
    if generator.training and z.shape[:-1].numel() == 1:
        raise ConfigError(
            f"{name} got noise of one row{describe_origin()} (shape {tuple(z.shape)}): batch normalisation needs "
            "at least two rows per batch in training mode; train with batch_size >= 2 (in fit, a last incomplete "
            "batch of one row also does this: pass drop_last=True or another batch_size), or call "
            "generator.eval() to use the running statistics")


@serializable
class MLPDiscriminator(nn.Module):
    """:math:`D_\\phi(x)`: an MLP from ``batch x in_shape`` to logits ``batch``
    (or ``batch x out_dim`` when ``out_dim > 1``, e.g. an InfoGAN code posterior).

    :param in_shape: event shape of the inputs.
    :param hidden: hidden widths.
    :param activation: hidden non-linearity, leaky ReLU by default [1].
    :param out_dim: outputs per example.
    :raises ModelSpecError: an ``in_shape``, hidden width or ``out_dim`` that is not positive integers
        (``bool`` and floats refused), or an unknown activation.
    """

    def __init__(self, in_shape: int | Sequence[int], hidden: Sequence[int] = (128, 128),
                 activation: str = "leaky_relu", out_dim: int = 1):
        super().__init__()
        self.in_shape = _shape(in_shape, "MLPDiscriminator in_shape")
        self.out_dim = _dim(out_dim, "MLPDiscriminator out_dim")
        hidden = layer_sizes(hidden, "MLPDiscriminator hidden", error=ModelSpecError)
        self.net = mlp([math.prod(self.in_shape), *hidden, self.out_dim], activation, "default")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``batch`` (``batch x out_dim``) of inputs ``batch x in_shape``.

        :param x: inputs ``batch x in_shape`` (any batch shape) in the network's dtype.
        :raises DataError: ``x`` not ending in ``in_shape``, or of another dtype than the network.
        :raises DeviceError: ``x`` on another device than the network."""
        _check_input(x, self.in_shape, self, "input 'x'")
        out = self.net(x.reshape(x.shape[: x.dim() - len(self.in_shape)] + (math.prod(self.in_shape),)))
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
    :raises ModelSpecError: a ``noise_dim`` or ``width`` that is not a positive integer, a bad
        ``image_shape``, or an unknown ``out_activation``.
    """

    def __init__(self, noise_dim: int, image_shape: int | Sequence[int] = (8, 8), width: int = 32,
                 out_activation: str | None = "sigmoid"):
        super().__init__()
        self.noise_dim = _dim(noise_dim, "ConvGenerator noise_dim")
        width = _dim(width, "ConvGenerator width")
        _activation(out_activation, "ConvGenerator out_activation")
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
        """Flattened images ``batch x H*W`` from noise ``batch x noise_dim`` (any batch shape).

        :param z: noise ``batch x noise_dim`` in the network's dtype.
        :raises DataError: ``z`` of the wrong last dimension or dtype.
        :raises DeviceError: ``z`` on another device than the network.
        :raises ConfigError: in training mode, noise of one row (its batch norms' statistics are not defined)."""
        _check_input(z, (self.noise_dim,), self, "noise 'z'")
        _refuse_one_row(self, z, "ConvGenerator")
        batch = z.shape[:-1]
        h = self.project(z.reshape(-1, self.noise_dim)).reshape(-1, *self._base)
        return self.deconv(h).reshape(batch + self.out_shape)


@serializable
class ConvDiscriminator(nn.Module):
    """DCGAN-style discriminator [1]: two stride-2 convolutions with leaky ReLU,
    then a linear layer to the logit ``batch`` (or ``batch x out_dim``).

    :param image_shape: ``(H, W)``; the input is the flattened image ``batch x H*W``.
    :param width: channels of the first convolution.
    :param out_dim: outputs per example.
    :raises ModelSpecError: a ``width`` or ``out_dim`` that is not a positive integer, or a bad ``image_shape``.
    """

    def __init__(self, image_shape: int | Sequence[int] = (8, 8), width: int = 32, out_dim: int = 1):
        super().__init__()
        self.image_shape = _image_shape(image_shape)
        self.in_shape = (math.prod(self.image_shape),)
        self.out_dim = _dim(out_dim, "ConvDiscriminator out_dim")
        width = _dim(width, "ConvDiscriminator width")
        h, w = self.image_shape[0] // 4, self.image_shape[1] // 4
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * h * w, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``batch`` (``batch x out_dim``) of flattened images ``batch x H*W`` (or images ``batch x H x W``).

        :param x: flattened images ``batch x H*W`` or images ``batch x H x W``, in the network's dtype.
        :raises DataError: ``x`` ending in neither ``H*W`` nor ``(H, W)``, or of another dtype than the network.
        :raises DeviceError: ``x`` on another device than the network."""
        as_image = isinstance(x, torch.Tensor) and x.dim() >= 2 and tuple(x.shape[-2:]) == self.image_shape
        event = self.image_shape if as_image else self.in_shape
        _check_input(x, event, self, "input 'x'")
        batch = x.shape[: x.dim() - len(event)]
        out = self.net(x.reshape(-1, 1, *self.image_shape))
        out = out.reshape(batch + (self.out_dim,))
        return out.squeeze(-1) if self.out_dim == 1 else out


def gan_networks(kind: str, data_shape: int | Sequence[int], noise_dim: int = 16, hidden: Sequence[int] = (128, 128),
                 image_shape: Sequence[int] | None = None, width: int = 32,
                 out_activation: str | None = None) -> tuple[nn.Module, nn.Module]:
    """A matching ``(generator, discriminator)`` pair.

    :param kind: ``"mlp"`` or ``"conv"`` (``image_shape`` required for ``"conv"``).
    :param data_shape: event shape of the data (``2`` for the ring, ``64`` for digits).
    :param int noise_dim: the generator's input (noise) dimension.
    :param hidden: hidden widths of both ``"mlp"`` networks (:class:`MLPGenerator`, :class:`MLPDiscriminator`);
        unused by ``"conv"``.
    :param image_shape: ``(H, W)`` of the ``"conv"`` networks, both divisible by 4, with ``H * W`` the data's
        size; unused by ``"mlp"``.
    :param int width: channels of the last hidden layer of both ``"conv"`` networks (:class:`ConvGenerator`,
        :class:`ConvDiscriminator`); unused by ``"mlp"``.
    :param out_activation: the generator's output non-linearity (``"sigmoid"`` for images).
    :returns: ``(generator, discriminator)``.
    :raises ModelSpecError: an unknown ``kind``, ``"conv"`` without ``image_shape`` or with one whose pixels
        are not the data's, or a bad size (see the networks' classes).
    """
    if kind == "mlp":
        return (MLPGenerator(noise_dim, data_shape, hidden, out_activation=out_activation),
                MLPDiscriminator(data_shape, hidden))
    if kind == "conv":
        if image_shape is None:
            raise ModelSpecError("gan_networks('conv', ...) needs image_shape=(H, W)")
        gen = ConvGenerator(noise_dim, image_shape, width, out_activation=out_activation)
        if gen.out_shape != _shape(data_shape, "data_shape"):
            raise ModelSpecError(f"image_shape {gen.image_shape} gives {gen.out_shape[0]} pixels, "
                                 f"the data have shape {_shape(data_shape, 'data_shape')}")
        return gen, ConvDiscriminator(image_shape, width)
    raise ModelSpecError(f"gan_networks kind must be 'mlp' or 'conv', got {kind!r}")
