r"""Deep belief network: a stack of RBMs trained greedily, layer by layer [1].

RBM :math:`l` models the hidden probabilities of RBM :math:`l-1`,
:math:`x_{l+1} = \sigma(c_l + x_l^\top W_l)`.  The generative model is an
undirected top RBM over the two top layers and sigmoid belief layers below:
samples are drawn by Gibbs sampling in the top RBM followed by one top-down
pass :math:`x_l = \sigma(b_l + W_l x_{l+1})`.  The stack can be unrolled into a
deep autoencoder [2] (encoder :math:`W_l`, decoder :math:`W_l^\top`, untied) or
a classifier (the encoder plus a new softmax layer), and fine-tuned with
:func:`hybridpgm.fit` and the objectives of :mod:`hybridpgm.energy.finetune`.

References:

1. G. E. Hinton, S. Osindero, Y.-W. Teh, "A fast learning algorithm for deep
   belief nets", Neural Computation, 2006.
2. G. E. Hinton, R. R. Salakhutdinov, "Reducing the dimensionality of data with
   neural networks", Science, 2006.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import skip_init

from hybridpgm.checks import (as_integer, check_device, flag, generator_keywords, generator_or_none, layer_sizes,
                              positive_int, sample_count)
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.energy.rbm import RBM
from hybridpgm.energy.sampling import bernoulli, standard_normal
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.options import PARAMETERS_BUILT, Option
from hybridpgm.serialization import serializable
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["DBN", "DBNAutoencoder"]


def layer_checkpoints(checkpoints: Sequence[str | os.PathLike] | None, layers: int, model: str,
                      fit_kwargs: dict | None = None) -> list[dict]:
    """``fit``'s ``checkpoint=`` argument for each of ``layers`` greedy stages
    (empty dicts without ``checkpoints``).

    :param fit_kwargs: the keywords the stages pass on to :func:`hybridpgm.fit`; they must not hold
        ``checkpoint`` (one path shared by every layer: each upper layer would resume the layer below's
        finished run and end up a copy of it).
    :raises ConfigError: ``checkpoints`` is not one path per layer, or ``fit_kwargs`` holds ``checkpoint``.
    """
    if fit_kwargs and "checkpoint" in fit_kwargs:
        raise ConfigError(f"{model}.pretrain trains one RBM per layer and takes checkpoints=[...] ({layers} paths, "
                          f"one per layer), not checkpoint={fit_kwargs['checkpoint']!r}: a single path would "
                          f"make every layer resume the first layer's run")
    if checkpoints is None:
        return [{}] * layers
    if isinstance(checkpoints, (str, os.PathLike)) or len(checkpoints) != layers:
        raise ConfigError(f"{model}.pretrain checkpoints must be {layers} paths, one per layer, got {checkpoints!r}")
    return [{"checkpoint": path} for path in checkpoints]


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear`` holding copies of ``weight`` (``out x in``) and ``bias``, built without its random
    initialisation (:func:`torch.nn.utils.skip_init`), which would draw from and advance the global RNG."""
    layer = skip_init(nn.Linear, weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def _random_linear(in_features: int, out_features: int, generator: torch.Generator,
                   like: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear(in_features, out_features)`` on ``like``'s device and dtype with ``nn.Linear``'s
    initialisation, :math:`U(-1/\\sqrt{in}, 1/\\sqrt{in})` for weight and bias (what its Kaiming-uniform
    rule with :math:`a = \\sqrt 5` amounts to), drawn from ``generator`` on its own device."""
    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
    draws = dict(device=generator.device, dtype=like.dtype)
    weight = torch.empty(out_features, in_features, **draws).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(out_features, **draws).uniform_(-bound, bound, generator=generator)
    return _linear(weight.to(like.device), bias.to(like.device))


@serializable
class DBNAutoencoder(nn.Module):
    """An unrolled DBN: ``encoder`` (sigmoid layers) and ``decoder`` (sigmoid layers; the
    last returns logits, or means for Gaussian data); ``forward(x)`` reconstructs ``x``.

    :param encoder: the :class:`nn.Sequential` of the bottom-up layers (held as :attr:`encoder`).
    :param decoder: the :class:`nn.Sequential` of the top-down layers (held as :attr:`decoder`).
    :ivar encoder: :class:`nn.Sequential` mapping ``batch x V`` to ``batch x H_top``.
    :ivar decoder: :class:`nn.Sequential` mapping codes back to ``batch x V`` logits.
    """

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``: logits, or means for Gaussian data, ``batch x V``.

        :param x: ``batch x V`` input data (checked when the encoder starts with an :class:`nn.Linear`).
        :raises DataError: ``x`` is not a tensor with the encoder's input width as its last dimension, or has a
            dtype the model does not convert exactly (:func:`~hybridpgm.data.validation.as_model_dtype`).
        :raises DeviceError: ``x`` is not on the parameters' device.
        """
        first = self.encoder[0] if len(self.encoder) else None
        if isinstance(first, nn.Linear):
            require_tensor(x, "DBNAutoencoder input 'x'", arg="x")
            if x.dim() < 1 or x.shape[-1] != first.in_features:
                raise DataError(f"DBNAutoencoder input 'x' must have shape (batch, {first.in_features}), "
                                f"got {tuple(x.shape)}")
            check_device(x, first.weight, "DBNAutoencoder input 'x'")
            x = as_model_dtype(x, first.weight.dtype, "DBNAutoencoder input 'x'")
        return self.decoder(self.encoder(x))


@serializable
class DBN(nn.Module):
    """Deep belief network over layer sizes ``[V, H1, ..., HL]``.

    :param sizes: layer sizes, at least two.
    :param str visible: ``"bernoulli"`` or ``"gaussian"`` units of the bottom RBM.
    :param bool probabilities: the bottom RBM accepts data in ``[0, 1]``.
    :param float init_scale: standard deviation of every RBM's initial weights (``0.01``; see
        :class:`~hybridpgm.energy.RBM`).
    :raises ModelSpecError: ``sizes`` is not a sequence of at least two positive integers (``bool`` and floats
        are refused), or a bad option of the RBMs.
    :ivar rbms: the :class:`~hybridpgm.energy.RBM` of each pair of layers
        (upper RBMs accept probabilities as data).
    """

    sizes = Option(fixed=PARAMETERS_BUILT, doc="""Layer sizes ``[V, H1, ..., HL]`` (fixed: they decide the RBMs and
        their parameters' shapes; an assignment of other sizes raises :class:`~hybridpgm.errors.FixedOptionError`).""")

    def __init__(self, sizes: Sequence[int], *, visible: str = "bernoulli", probabilities: bool = False,
                 init_scale: float = 0.01):
        super().__init__()
        sizes = layer_sizes(sizes, "DBN sizes [V, H1, ...]", error=ModelSpecError, minimum_length=2)
        self.sizes = sizes
        self.rbms = nn.ModuleList([
            RBM(sizes[l], sizes[l + 1], visible=visible if l == 0 else "bernoulli",
                probabilities=probabilities if l == 0 else True, init_scale=init_scale)
            for l in range(len(sizes) - 1)
        ])

    def extra_repr(self) -> str:
        """``sizes=[V, H1, ...]``, shown by ``repr``."""
        return f"sizes={self.sizes}"

    @torch.no_grad()
    def transform(self, v: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Bottom-up probabilities of hidden layer ``layers`` (default: the top), ``batch x H``.

        :param v: ``batch x V`` visible data.
        :param int layers: ``1`` to ``L`` (the number of RBMs), or ``None`` for the top.
        :raises ConfigError: ``layers`` out of that range, or not an integer.
        :raises DataError: bad ``v`` (see :meth:`RBM.check_visible <hybridpgm.energy.RBM.check_visible>`).
        """
        if layers is not None:
            layers = positive_int(layers, "DBN.transform layers")
            if layers > len(self.rbms):
                raise ConfigError(f"DBN.transform layers must be between 1 and {len(self.rbms)} (the hidden "
                                  f"layers), got {layers}")
        v = self.rbms[0].check_visible(v)
        for rbm in self.rbms[: layers or len(self.rbms)]:
            v = torch.sigmoid(rbm.hidden_logits(v))
        return v

    def pretrain(self, data: torch.Tensor, *, epochs: int | None = None, k: int = 1, persistent: bool = False,
                 num_chains: int = 100, checkpoints: Sequence[str | os.PathLike] | None = None,
                 **fit_kwargs) -> list:
        """Greedy layer-wise training: RBM ``l`` by CD-``k`` (or PCD) on the
        probabilities of layer ``l`` given the data [1].

        :param data: ``N x V``.
        :param epochs: passes over the data per RBM, as :func:`hybridpgm.fit`'s ``epochs`` (``None``: one pass,
            or ``max_steps`` steps per RBM where ``fit_kwargs`` give it).
        :param checkpoints: one checkpoint path per RBM (``resume``,
            ``overwrite``, ... in ``fit_kwargs`` apply to each): a preempted
            pretraining resumes in the layer it stopped in, finished layers load.
        :param fit_kwargs: passed to :func:`hybridpgm.fit` (``batch_size``, ``optim``, ``seed``, ...) for each
            layer; not ``checkpoint`` (use ``checkpoints``).
        :param int k: Gibbs sweeps per step of CD-``k`` (or of PCD).
        :param bool persistent: train each RBM by PCD (persistent chains) instead of CD-``k``.
        :param int num_chains: the persistent fantasy particles of each RBM's PCD (with ``persistent`` only; see
            :class:`~hybridpgm.infer.PersistentCD`).
        :returns: the :class:`~hybridpgm.train.FitResult` of each layer.
        :raises ConfigError: ``checkpoints`` is not one path per RBM, ``fit_kwargs`` holds ``checkpoint``, or
            ``persistent`` is not ``True`` or ``False``.
        """
        from hybridpgm.energy.greedy_stages import GreedyStages
        from hybridpgm.infer.contrastive_divergence import ContrastiveDivergence, PersistentCD

        persistent = flag(persistent, "DBN.pretrain persistent")

        x = self.rbms[0].check_visible(data, "data")
        results = []
        stages = GreedyStages(checkpoints, len(self.rbms), "DBN", fit_kwargs)  # warns of a layer resumed on new inputs
        for layer, (rbm, path) in enumerate(zip(self.rbms, stages.paths)):
            objective = PersistentCD(rbm, k, num_chains) if persistent else ContrastiveDivergence(rbm, k)
            results.append(stages.fit(layer, objective, x, epochs=epochs, **path, **fit_kwargs))
            with torch.no_grad():
                x = torch.sigmoid(rbm.hidden_logits(x.to(rbm.weight.device)))
        return results

    def encoder(self) -> nn.Sequential:
        """A new :class:`nn.Sequential` of ``Linear + Sigmoid`` layers initialised from the RBMs (the global
        torch RNG is not touched)."""
        layers = []
        for rbm in self.rbms:
            weight = rbm.weight.detach()
            if rbm.gaussian:  # hidden logits are c + (v / sigma) W
                weight = weight / rbm.sigma.unsqueeze(-1)
            layers += [_linear(weight.T, rbm.hidden_bias.detach()), nn.Sigmoid()]
        return nn.Sequential(*layers)

    def to_autoencoder(self) -> DBNAutoencoder:
        """Unroll into a deep autoencoder [2] (new, untied parameters copied from the RBMs; the global torch
        RNG is not touched)."""
        decoder = []
        for i, rbm in enumerate(reversed(self.rbms)):
            decoder.append(_linear(rbm.weight.detach(), rbm.visible_bias.detach()))
            if i < len(self.rbms) - 1:
                decoder.append(nn.Sigmoid())
        if self.rbms[0].gaussian:  # the last layer outputs b + sigma * W h; fold sigma in
            with torch.no_grad():
                decoder[-1].weight.mul_(self.rbms[0].sigma.unsqueeze(-1))
        return DBNAutoencoder(self.encoder(), nn.Sequential(*decoder))

    def to_classifier(self, num_classes: int, *, generator: torch.Generator | None = None) -> nn.Sequential:
        """The encoder followed by a new ``Linear(H_top, num_classes)`` returning logits (``batch x
        num_classes``).

        The head is initialised as :class:`nn.Linear` does, weight and bias uniform on
        :math:`[-1/\\sqrt{H_{top}}, 1/\\sqrt{H_{top}}]`.  Its draws come from ``generator`` when one is given
        (the same seed gives the same head, and torch's global RNG is neither read nor advanced), else from
        torch's global RNG, as a plain ``nn.Linear`` would.

        :param int num_classes: the number of classes, at least 2.
        :param generator: a :class:`torch.Generator` for the head's initial weights, on any device (the draws
            are made on its device, then copied to the model's).
        :raises ConfigError: ``num_classes`` is not an integer ``>= 2``, or ``generator`` is not a
            :class:`torch.Generator`.
        """
        n = as_integer(num_classes)  # integer scalars (NumPy's) pass; bool and floats do not
        if n is None or n < 2:
            raise ConfigError(f"to_classifier needs num_classes >= 2, got {num_classes!r}")
        num_classes = n
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ConfigError(f"to_classifier generator must be a torch.Generator or None, got "
                              f"{type(generator).__name__}")
        top = self.rbms[-1].weight
        if generator is None:
            head = nn.Linear(top.shape[1], num_classes).to(top)
        else:
            head = _random_linear(top.shape[1], num_classes, generator, top)
        return nn.Sequential(*self.encoder(), head)

    @torch.no_grad()
    @keyword_only_soon("mean")
    def sample(self, num_samples: int, steps: int = 1000, *, mean: bool = True,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate ``num_samples x V``: ``steps`` Gibbs sweeps in the top RBM, then one top-down pass
        through the sigmoid belief layers, each hidden layer sampled,
        :math:`x_l \\sim \\operatorname{Bernoulli}\\big(\\sigma(b_l + W_l x_{l+1})\\big)` for
        :math:`l \\ge 1`.

        With ``mean`` the result is the visible layer's probabilities (means for Gaussian units),
        :math:`E[v \\mid x_1] = \\sigma(b_0 + W_0 x_1)`, given the *sample* :math:`x_1` of the layer above it, so
        its average over draws is :math:`E[v]` under the DBN; for a one-RBM DBN ``[V, H]``, where the top
        RBM's visible layer is the data, that is :math:`\\sigma(b + W h)` given the hidden sample :math:`h` of
        the last sweep.  Without ``mean`` the visible layer is sampled too (the sweep's visible sample for a
        one-RBM DBN; :math:`b_0 + \\sigma \\odot W_0 x_1` plus Gaussian noise for Gaussian units).

        :param int num_samples: the number of samples (and chains).
        :param int steps: Gibbs sweeps in the top RBM (default ``1000``).
        :param bool mean: return the visible layer's probabilities (default ``True``) instead of a sample.
        :param generator: a :class:`torch.Generator` for the draws (the top RBM's chains and every layer below;
            on the parameters' device); ``None`` draws from torch's global stream.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, ``steps`` not a positive integer,
            ``mean`` not ``True`` or ``False``, or ``generator`` neither a :class:`torch.Generator` nor ``None``.
        :raises ModelSpecError: a parameter of the top RBM holds NaN/inf.
        """
        steps = positive_int(steps, "DBN.sample steps")
        num_samples = sample_count(num_samples, "DBN.sample num_samples")
        mean = flag(mean, "DBN.sample mean")
        generator = generator_or_none(generator, "DBN.sample generator")
        with holding_global_state():  # no draw from the global stream amid another thread's seeded fit step
            if mean and len(self.rbms) == 1:  # the last sweep's visible probabilities, not its sample
                rbm = self.rbms[0]
                rbm.check_parameters()
                start = rbm.random_visible(num_samples, **generator_keywords(generator, rbm.random_visible,
                                                                             what="DBN.sample generator"))
                h = rbm._sample_hidden(rbm._gibbs(start, steps - 1, None, generator), generator)
                param = rbm.visible_param(h)
                return param if rbm.gaussian else torch.sigmoid(param)
            x = self.rbms[-1].sample(num_samples, steps, **generator_keywords(generator, self.rbms[-1].sample,
                                                                              what="DBN.sample generator"))
            for rbm in reversed(self.rbms[:-1]):
                param = rbm.visible_param(x)
                x = param if rbm.gaussian else torch.sigmoid(param)
                if rbm is not self.rbms[0]:  # a hidden layer: always a sample (only RBM 0 can be Gaussian)
                    x = bernoulli(x, generator=generator)
            if not mean and len(self.rbms) > 1:
                bottom = self.rbms[0]
                if bottom.gaussian:
                    x = x + bottom.sigma * standard_normal(x, generator=generator)
                else:
                    x = bernoulli(x, generator=generator)
            return x
