"""Small shared network builders.

:func:`mlp` builds the multi-layer perceptrons used by the encoders, decoders,
recognition networks and discriminators of the library, with the two common
initialisation schemes:

* ``"xavier"`` -- Glorot & Bengio [1]: :math:`W \\sim \\mathcal U(-a, a)`,
  :math:`a = \\sqrt{6 / (n_\\text{in} + n_\\text{out})}`, for tanh/sigmoid nets;
* ``"he"`` -- He et al. [2]: :math:`W \\sim \\mathcal N(0, 2 / n_\\text{in})`, for ReLU nets.

References:

1. X. Glorot, Y. Bengio, *Understanding the difficulty of training deep
   feedforward neural networks*, AISTATS 2010.
2. K. He, X. Zhang, S. Ren, J. Sun, *Delving Deep into Rectifiers*, ICCV 2015.
3. S. Ioffe, C. Szegedy, *Batch Normalization*, ICML 2015.
4. T. Chen, B. Xu, C. Zhang, C. Guestrin, *Training Deep Nets with Sublinear
   Memory Cost*, arXiv:1604.06174, 2016.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

from hybridpgm.errors import ModelSpecError

__all__ = ["ACTIVATIONS", "bayesianize", "checkpointed_call", "mlp"]

#: Names accepted for ``activation`` / ``out_activation``.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}

_INITS = ("xavier", "he", "default")


def _initialise(layer: nn.Linear, init: str) -> None:
    if init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif init == "he":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if init != "default":
        nn.init.zeros_(layer.bias)


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    init: str = "xavier",
    batch_norm: bool = False,
    out_activation: str | None = None,
) -> nn.Sequential:
    """A fully connected network from ``sizes[0]`` inputs to ``sizes[-1]`` outputs.

    :param sizes: layer widths including input and output, at least two.
    :param activation: hidden non-linearity, a key of :data:`ACTIVATIONS`.
    :param init: ``"xavier"``, ``"he"`` or ``"default"`` (PyTorch's own).
    :param batch_norm: insert :class:`torch.nn.BatchNorm1d` [3] after every
        hidden linear layer.
    :param out_activation: optional non-linearity after the last layer.
    :returns: a module mapping ``batch_shape x sizes[0]`` to ``batch_shape x sizes[-1]``.

    >>> net = mlp([784, 400, 50])
    >>> net(torch.zeros(3, 784)).shape
    torch.Size([3, 50])
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(int(s) != s or s < 1 for s in sizes):
        raise ModelSpecError(f"mlp sizes must be >= 2 positive integers, got {sizes}")
    for name in (activation, out_activation):
        if name is not None and name not in ACTIVATIONS:
            raise ModelSpecError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    if init not in _INITS:
        raise ModelSpecError(f"unknown init {init!r}; choose from {_INITS}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        _initialise(linear, init)
        layers.append(linear)
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(ACTIVATIONS[activation]())
    if out_activation is not None:
        layers.append(ACTIVATIONS[out_activation]())
    return nn.Sequential(*layers)


def checkpointed_call(module: nn.Module, *inputs: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """``module(*inputs)``, with activation checkpointing [4] when ``enabled``
    and gradients are being recorded: the activations inside ``module`` are
    not stored but recomputed during the backward pass, trading one extra
    forward pass for memory.  This is the answer when even a micro-batch of
    one does not fit: accumulation bounds the batch, checkpointing the depth.
    """
    if not (enabled and torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())):
        return module(*inputs)
    if isinstance(module, nn.Sequential) and len(inputs) == 1:
        # sqrt(n) segments of layers, the strategy of [4]
        segments = max(1, math.isqrt(sum(isinstance(m, nn.Linear) for m in module)))
        return checkpoint_sequential(module, segments, inputs[0], use_reentrant=False)
    return checkpoint(module, *inputs, use_reentrant=False)


from hybridpgm.bayesian_nn import bayesianize  # noqa: E402
