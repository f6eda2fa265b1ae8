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

import contextlib
import math
from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hybridpgm.checks import flag, layer_sizes
from hybridpgm.errors import ModelSpecError

__all__ = ["ACTIVATIONS", "bayesianize", "checkpointed_call", "checkpointing_saves_memory", "mlp", "on_rows"]

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

    :param sizes: layer widths including input and output, at least two positive
        integers (``bool`` and floats such as ``8.0`` are refused, not coerced).
    :param activation: hidden non-linearity, a key of :data:`ACTIVATIONS`.
    :param init: ``"xavier"``, ``"he"`` or ``"default"`` (PyTorch's own).
    :param batch_norm: insert :class:`torch.nn.BatchNorm1d` [3] after every
        hidden linear layer.  ``BatchNorm1d`` reads a 3-d input as ``N x C x L``
        (channels second), so the network itself then takes ``rows x sizes[0]``
        only: call it through :func:`on_rows` for any other batch shape (noise
        ``S x B x d`` from a particle plate or :class:`~pyro.infer.Predictive`),
        which normalises over all the rows of every batch dimension.
    :param out_activation: optional non-linearity after the last layer.
    :returns: a module mapping ``batch_shape x sizes[0]`` to ``batch_shape x sizes[-1]``
        (with ``batch_norm``: ``rows x sizes[0]`` to ``rows x sizes[-1]``, any ``batch_shape`` through
        :func:`on_rows`).
    :raises ModelSpecError: fewer than two sizes, a size that is not a positive integer (the
        message names the entry), or an unknown activation or init (the message lists the choices).

    >>> net = mlp([784, 400, 50])
    >>> net(torch.zeros(3, 784)).shape
    torch.Size([3, 50])
    """
    sizes = layer_sizes(sizes, "mlp sizes", error=ModelSpecError, minimum_length=2)
    for what, name in (("activation", activation), ("out_activation", out_activation)):
        if (name is not None or what == "activation") and not (isinstance(name, str) and name in ACTIVATIONS):
            raise ModelSpecError(f"unknown {what} {name!r}; choose from {sorted(ACTIVATIONS)}")
    if not (isinstance(init, str) and init in _INITS):
        raise ModelSpecError(f"unknown init {init!r}; choose from {_INITS}")
    batch_norm = flag(batch_norm, "mlp batch_norm", error=ModelSpecError)
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


def on_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` on ``x`` of shape ``batch_shape x features`` as one batch of rows: the batch dimensions are
    flattened into one before the call and restored after, so ``module`` sees ``rows x features`` with
    ``rows = prod(batch_shape)`` (one row for a 1-d ``x``).  A network of row-wise layers gives the same
    result either way; one with :class:`torch.nn.BatchNorm1d` (``mlp(..., batch_norm=True)``) needs it, since
    ``BatchNorm1d`` reads a 3-d input as ``N x C x L``, and then normalises, in training mode, with the
    statistics of all ``rows``.

    :param module: maps ``rows x features`` to ``rows x out_features``.
    :param x: ``batch_shape x features``; a 2-d ``x`` is passed as it is.
    :returns: ``batch_shape x out_features``.

    >>> net = mlp([3, 8, 2], batch_norm=True)
    >>> on_rows(net, torch.randn(4, 5, 3)).shape
    torch.Size([4, 5, 2])
    """
    if x.dim() == 2:
        return module(x)
    out = module(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]))  # math.prod, not -1: zero rows reshape too
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _blocks(module: nn.Sequential) -> list[list[nn.Module]]:
    """Split a :class:`~torch.nn.Sequential` into blocks: each layer with
    parameters (a :class:`~torch.nn.Linear`, ...) together with the
    parameter-free layers (activation, ...) that follow it."""
    blocks: list[list[nn.Module]] = []
    for layer in module:
        has_params = any(True for _ in layer.parameters(recurse=True))
        if not blocks or (has_params and not isinstance(layer, nn.modules.batchnorm._BatchNorm)):
            blocks.append([layer])
        else:
            blocks[-1].append(layer)
    return blocks


#: Layers whose backward needs nothing but their input (and their weights).
_ONLY_KEEP_THEIR_INPUT = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)


def checkpointing_saves_memory(module: nn.Module) -> bool:
    """Whether :func:`checkpointed_call` can lower what ``module`` keeps for
    the backward pass.

    A checkpointed segment keeps only its input.  A module that is one linear
    map and nothing else (a :class:`~torch.nn.Linear`, a convolution, an
    :class:`~torch.nn.Embedding`) saves only its input anyway, so checkpointing
    it saves nothing and costs a second forward pass; any module with a second
    layer (an activation, a normalisation, another linear map) stores
    intermediate results that checkpointing drops.

    :param module: the module a checkpointed segment would run.
    :returns: ``False`` for such a single layer, and for a :class:`~torch.nn.Sequential` that is empty or holds
        one module for which this is ``False``; ``True`` for any other module.
    """
    if isinstance(module, nn.Sequential):
        return len(module) > 1 or (len(module) == 1 and checkpointing_saves_memory(module[0]))
    return not isinstance(module, _ONLY_KEEP_THEIR_INPUT)


class _RecomputeFromBefore:
    """Context for the recomputation of a checkpointed segment: it starts from the segment's ``buffers`` as they
    were *before* the forward pass (snapshotted when the checkpoint's ``context_fn`` is called, which is before
    the forward runs) and leaves them as it found them.  A forward that reads a buffer and then updates it in
    place -- a batch norm's running statistics, spectral norm's power-iteration vector :math:`u` -- is so
    recomputed from the very values the forward pass read (the gradient is that of the same function), and
    the buffers move once per call, not twice.  Costs a copy of the segment's buffers at the call and two
    at the recomputation."""

    def __init__(self, buffers: list[torch.Tensor]):
        self.buffers = buffers
        self.before = [b.detach().clone() for b in buffers]
        self.found: list[torch.Tensor] = []

    def __enter__(self):
        self.found = [b.detach().clone() for b in self.buffers]
        with torch.no_grad():
            for buffer, value in zip(self.buffers, self.before):
                buffer.copy_(value)
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for buffer, value in zip(self.buffers, self.found):
                buffer.copy_(value)
        self.found = []
        return False


def _segment_contexts(modules: Sequence[nn.Module]):
    buffers = [b for m in modules for b in m.buffers()]
    if not buffers:
        return None
    return lambda: (contextlib.nullcontext(), _RecomputeFromBefore(buffers))


def checkpointed_call(module: nn.Module, *inputs: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """``module(*inputs)``, with activation checkpointing [4] when ``enabled``
    and gradients are being recorded: the activations inside ``module`` are
    not stored but recomputed during the backward pass, trading one extra
    forward pass for memory.  This is the answer when even a micro-batch of
    one does not fit: accumulation bounds the batch, checkpointing the depth.

    A :class:`~torch.nn.Sequential` of :math:`n` blocks (a parameterised layer
    and the activations after it) is cut into :math:`\\lfloor\\sqrt n\\rfloor`
    segments of :math:`\\lceil n / \\lfloor\\sqrt n\\rfloor\\rceil` blocks, the strategy of [4],
    and **every** segment is checkpointed, the last included: unlike a plain
    stack of layers whose backward starts right after its last layer, the
    output of an encoder or decoder feeds a likelihood, a sampler and a loss,
    so the activations of its last segment would otherwise be held all that
    time.  For a network of one or two hidden layers (the default VAE) the
    whole network is one segment and only its input is kept.  Any other module
    is checkpointed as a whole.  The recomputation starts from the buffers as the forward pass
    read them and restores them afterwards, so batch-norm running statistics are updated once per call and a
    forward that updates a buffer it reads (spectral norm's power iteration in training mode) gets the
    gradient of the function it computed.

    :param module: the network; it is called directly when none of its
        parameters requires grad, or when checkpointing cannot save memory
        (a single linear layer, see :func:`checkpointing_saves_memory`).
    :param inputs: its inputs, ``batch_shape x in_features``.
    :param bool enabled: ``False`` calls ``module(*inputs)``.
    :returns: ``module(*inputs)``.
    """
    if not (enabled and torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
            and checkpointing_saves_memory(module)):
        return module(*inputs)
    if isinstance(module, nn.Sequential) and len(inputs) == 1:
        blocks = _blocks(module)
        per_segment = math.ceil(len(blocks) / max(1, math.isqrt(len(blocks))))
        x = inputs[0]
        for start in range(0, len(blocks), per_segment):
            layers = [m for block in blocks[start:start + per_segment] for m in block]
            segment = nn.Sequential(*layers)
            contexts = _segment_contexts(layers)
            kwargs = {"context_fn": contexts} if contexts is not None else {}
            x = checkpoint(segment, x, use_reentrant=False, **kwargs)
        return x
    contexts = _segment_contexts([module])
    kwargs = {"context_fn": contexts} if contexts is not None else {}
    return checkpoint(module, *inputs, use_reentrant=False, **kwargs)


from hybridpgm.bayesian_nn import bayesianize  # noqa: E402
