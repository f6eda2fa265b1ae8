"""Gibbs sampling of the hidden units of a sigmoid belief net given the data.

Each hidden unit :math:`h_{lj}` is resampled from its exact full conditional,
which involves only its Markov blanket -- its parents (layer :math:`l+1`), its
children (layer :math:`l-1`, with :math:`h_0 = x`) and its children's other
parents (the rest of layer :math:`l`) [1]:

.. math::

    \\log \\frac{p(h_{lj} = 1 \\mid \\cdot)}{p(h_{lj} = 0 \\mid \\cdot)}
    = a_{lj} + \\sum_i \\Big[ \\log \\mathrm{Bern}\\big(h_{l-1,i}; \\sigma(z^{1}_i)\\big)
                         - \\log \\mathrm{Bern}\\big(h_{l-1,i}; \\sigma(z^{0}_i)\\big) \\Big],

where :math:`a_{lj}` is the unit's prior logit from the layer above and
:math:`z^{v} = W_l h_l + b_{l-1}` with :math:`h_{lj} = v`.  The second term
is where *explaining away* lives: once another parent already explains a
child, the evidence for :math:`h_{lj}` weakens.  Units of one layer are
coupled through it, so they are visited one at a time (systematic scan),
with every update vectorized over chains and datapoints.

Under :func:`torch.autocast` (a user's block, or ``fit(precision="bf16")``) :meth:`SBNGibbs.sample`,
:meth:`SBNGibbs.sweep` and :meth:`SBNGibbs.full_conditional` run with autocast off
(:func:`~hybridpgm.infer.autocast_off.autocast_off`), in the net's dtype, as an RBM's and a DBM's Gibbs sweeps do:
the bfloat16 log-odds drew other states (29 and 14 of the units of a ``[64, 32, 16]`` net's two layers for one
seed) and the samples came back in bfloat16.

This sampler only needs :class:`~hybridpgm.generative.SigmoidBeliefNet`'s
weights and scales to wide layers; :meth:`SBNGibbs.full_conditional` is the
reusable piece.  For small layers, the generic kernel
:class:`hybridpgm.infer.Gibbs` run on
:meth:`SigmoidBeliefNet.enumerated_model` draws whole layers at once instead.

References:

1. R. M. Neal, *Connectionist learning of belief networks*, Artificial Intelligence 56, 1992.
2. J. Pearl, *Probabilistic Reasoning in Intelligent Systems*, 1988 (explaining away).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from hybridpgm.checks import generator_or_none, positive_int, seed_of
from hybridpgm.data.validation import describe_origin
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.generative.sbn import SigmoidBeliefNet
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.infer.autocast_off import autocast_off
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.portable_result import PortableResult
from hybridpgm.softplus import softplus
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["GibbsSamples", "SBNGibbs"]


class GibbsSamples(NamedTuple):
    """Samples of every hidden layer.

    :ivar list layers: ``layers[l-1]`` has shape ``[num_samples, num_chains, *batch_shape, H_l]``, ``batch_shape``
        that of the data ``[*batch_shape, D]`` (``[B]`` for ``[B, D]``, ``[]`` for one example ``[D]``).

    ``to``, ``cpu`` and ``to_dict`` are :class:`~hybridpgm.portable_result.PortableResult`'s (a NamedTuple takes
    no base class).
    """

    layers: list

    to = PortableResult.to
    cpu = PortableResult.cpu
    to_dict = PortableResult.to_dict


def _bernoulli_log_prob(value: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return value * logits - softplus(logits)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of one storage (writes into ``a`` may then change ``b``)."""
    return a.device == b.device and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class SBNGibbs:
    """Systematic-scan Gibbs sampler over the hidden layers of a sigmoid belief net.

    :param SigmoidBeliefNet sbn: the model (its weights are read, not changed).
    """

    def __init__(self, sbn: SigmoidBeliefNet):
        if not isinstance(sbn, SigmoidBeliefNet):
            raise ConfigError(f"SBNGibbs needs a SigmoidBeliefNet, got {type(sbn).__name__}")
        self.sbn = sbn

    def _check_state(self, x: torch.Tensor, hs: list, what: str) -> None:
        """Shapes only (free): ``x`` ``[..., D]`` and one ``[..., H_l]`` tensor per hidden layer."""
        sizes = self.sbn.layer_sizes
        require_tensor(x, f"SBNGibbs.{what}: x", arg="x")
        if x.dim() < 1 or x.shape[-1] != sizes[0]:
            raise DataError(f"SBNGibbs.{what}: x must have shape [..., B, {sizes[0]}], got {tuple(x.shape)}")
        if isinstance(hs, torch.Tensor) or not isinstance(hs, (list, tuple)) or len(hs) != self.sbn.num_layers:
            got = len(hs) if isinstance(hs, (list, tuple)) else type(hs).__name__
            raise DataError(f"SBNGibbs.{what}: hs must be a list of {self.sbn.num_layers} hidden states "
                            f"[h_1, ..., h_L], got {got}")
        for l, (h, size) in enumerate(zip(hs, sizes[1:]), start=1):
            require_tensor(h, f"SBNGibbs.{what}: hs[{l - 1}] (layer h{l})", arg=f"hs[{l - 1}]")
            if h.dim() < 1 or h.shape[-1] != size:
                raise DataError(f"SBNGibbs.{what}: hs[{l - 1}] (layer h{l}) must have shape [..., B, {size}], "
                                f"got {tuple(h.shape)}")

    def _prior_logits(self, hs: list, layer: int) -> torch.Tensor:
        """Logits of layer ``layer`` given the layer above (or the top prior)."""
        if layer == self.sbn.num_layers:
            return self.sbn.prior_logits.expand_as(hs[layer - 1])
        return self.sbn.decoders[layer](hs[layer])

    def _prior_source(self, hs: list, layer: int) -> torch.Tensor:
        """The tensor :meth:`_prior_logits` of ``layer`` reads (besides the weights)."""
        return self.sbn.prior_logits if layer == self.sbn.num_layers else hs[layer]

    @autocast_off
    def full_conditional(self, x: torch.Tensor, hs: list, layer: int, unit: int) -> torch.Tensor:
        """Exact log-odds of :math:`h_{lj} = 1` given all other units and ``x`` (autocast off: see the module
        docstring).

        :param x: ``[..., B, D]`` data (broadcast against the chains).
        :param hs: hidden states ``[h_1, ..., h_L]``, each ``[..., B, H_l]``.
        :param int layer: :math:`l` in ``1..L``.
        :param int unit: :math:`j` in ``0..H_l - 1``.
        :returns: ``[..., B]`` log-odds.
        :raises ConfigError: ``layer`` or ``unit`` out of range, or not an integer.
        :raises DataError: ``x`` or ``hs`` of the wrong widths or number of layers.
        """
        self._check_state(x, hs, "full_conditional")
        layer = positive_int(layer, "SBNGibbs.full_conditional layer")
        if layer > self.sbn.num_layers:
            raise ConfigError(f"SBNGibbs.full_conditional layer must be in 1..{self.sbn.num_layers}, got {layer}")
        size = self.sbn.layer_sizes[layer]
        unit = positive_int(unit, "SBNGibbs.full_conditional unit", minimum=0)
        if unit >= size:
            raise ConfigError(f"SBNGibbs.full_conditional unit must be in 0..{size - 1} for layer h{layer}, "
                              f"got {unit}")
        below = x if layer == 1 else hs[layer - 2]
        dec = self.sbn.decoders[layer - 1]
        h = hs[layer - 1]
        z = dec(h)
        w = dec.weight[:, unit]
        z0 = z - h[..., unit : unit + 1] * w
        z1 = z0 + w
        child = (_bernoulli_log_prob(below, z1) - _bernoulli_log_prob(below, z0)).sum(-1)
        return self._prior_logits(hs, layer)[..., unit] + child

    @torch.no_grad()
    @keyword_only_soon("generator")
    @autocast_off
    def sweep(self, x: torch.Tensor, hs: list, *, generator: torch.Generator | None = None) -> list:
        """One systematic scan over every hidden unit, bottom layer first (autocast off: see the module
        docstring).

        :param x: ``[..., B, D]``.
        :param hs: current states, updated in place and returned. Each layer's prior logits :math:`a_l` (a
            matrix product with the layer above) are computed once per layer, not per unit.
        :param generator: a :class:`torch.Generator` on ``x``'s device for the uniform draws of the updates (else
            torch's global one): the sweep is then a function of ``x``, ``hs`` and the generator's state.
            Keyword-only, as every sampler's (by position, after ``hs``, it still works for one release, with a
            :class:`FutureWarning`).
        :raises DataError: ``x`` or ``hs`` of the wrong widths or number of layers.
        :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``.
        """
        generator = generator_or_none(generator, "SBNGibbs.sweep generator")
        self._check_state(x, hs, "sweep")
        for layer in range(1, self.sbn.num_layers + 1):
            below = x if layer == 1 else hs[layer - 2]
            dec = self.sbn.decoders[layer - 1]
            h = hs[layer - 1]
            z = dec(h)  # kept up to date as units flip
            # a_l reads only the layer above (or the top prior), which this layer's scan leaves alone: once per
            # layer; per unit only if that input shares memory with h (aliased layers), as it may then change
            fixed = not _shares_memory(h, self._prior_source(hs, layer))
            prior = self._prior_logits(hs, layer) if fixed else None
            for j in range(h.shape[-1]):
                w = dec.weight[:, j]
                z0 = z - h[..., j : j + 1] * w
                z1 = z0 + w
                child = (_bernoulli_log_prob(below, z1) - _bernoulli_log_prob(below, z0)).sum(-1)
                logit = (prior if fixed else self._prior_logits(hs, layer))[..., j] + child
                u = torch.rand(logit.shape, generator=generator, dtype=logit.dtype, device=logit.device)
                new = (u < torch.sigmoid(logit)).to(h.dtype)
                z = z0 + new.unsqueeze(-1) * w
                h[..., j] = new
        return hs

    @torch.no_grad()
    @autocast_off
    def sample(self, x: torch.Tensor, num_samples: int, *, warmup: int = 100, num_chains: int = 1,
               thin: int = 1, init: str = "guide", seed: int | None = None,
               generator: torch.Generator | None = None) -> GibbsSamples:
        """Draw posterior samples :math:`h \\sim p(h \\mid x)` for every datapoint, in the net's dtype (also
        under :func:`torch.autocast`, which is off here: see the module docstring).

        :param x: ``[..., D]`` binary data: ``[B, D]``, one example ``[D]`` (the samples of ``x[None]`` without its
            row dimension) or any batch shape (its rows flattened into ``[B, D]`` and the samples' row dimension
            unflattened, as :func:`~hybridpgm.batch_shapes.over_batch_shape` does for the evaluation methods: with
            a seed or generators seeded alike, the same draws).
        :param int num_samples: samples kept per chain.
        :param int warmup: sweeps discarded first.
        :param int num_chains: independent chains per datapoint (vectorized).
        :param int thin: sweeps between kept samples.
        :param str init: ``"guide"`` (a sample of the recognition network) or ``"zeros"``.
        :param int seed: seed of a private generator on ``x``'s device (the global RNG when ``None``): any integer
            torch accepts, ``[-2**63, 2**64)`` (:func:`~hybridpgm.checks.seed_of`).  ``seed=s`` draws as
            ``generator=torch.Generator(x.device).manual_seed(s)`` does.
        :param generator: a :class:`torch.Generator` on ``x``'s device for the draws (the initial guide sample
            and every sweep's); ``None`` draws from torch's global stream.  The package-wide spelling; give it or
            ``seed``, not both.
        :returns: :class:`GibbsSamples`, each layer ``[num_samples, num_chains, *batch_shape, H_l]``.
        :raises ConfigError: ``num_samples``, ``num_chains`` or ``thin`` not a positive integer, ``warmup``
            not a non-negative integer, ``seed`` not an integer in torch's range, an unknown ``init``,
            ``generator`` neither a :class:`torch.Generator` nor ``None``, or both ``seed`` and ``generator``.
        :raises DataError: bad ``x`` (see :meth:`SigmoidBeliefNet.check_data`), or ``x`` 0-d or with a last
            dimension other than ``D``, naming its shape.
        """
        batch = self._batch_shape(x)
        x = self.sbn.check_data(x if batch is None else x.reshape(math.prod(batch), self.sbn.layer_sizes[0]))
        num_samples = positive_int(num_samples, "SBNGibbs.sample num_samples")
        warmup = positive_int(warmup, "SBNGibbs.sample warmup", minimum=0)
        num_chains = positive_int(num_chains, "SBNGibbs.sample num_chains")
        thin = positive_int(thin, "SBNGibbs.sample thin")
        gen = generator_or_none(generator, "SBNGibbs.sample generator")
        if seed is not None and gen is not None:
            raise ConfigError("SBNGibbs.sample takes seed= or generator=, not both: for a seed, pass "
                              "generator=torch.Generator(x.device).manual_seed(seed) alone")
        if seed is not None:
            seed = seed_of(seed, "SBNGibbs.sample seed")
            gen = torch.Generator(device=x.device)
            gen.manual_seed(seed)
        xs = x.expand(num_chains, *x.shape)
        with holding_global_state():  # without a generator: no draw amid another thread's seeded fit step
            hs = self._init(xs, init, gen)
            for _ in range(warmup):
                self.sweep(xs, hs, generator=gen)
            kept = [[] for _ in hs]
            for _ in range(num_samples):
                for _ in range(thin):
                    self.sweep(xs, hs, generator=gen)
                for l, h in enumerate(hs):
                    kept[l].append(h.clone())
        layers = [torch.stack(k) for k in kept]  # [num_samples, num_chains, B, H_l]
        return GibbsSamples(layers if batch is None else [h.reshape(*h.shape[:2], *batch, h.shape[-1]) for h in layers])

    def _batch_shape(self, x) -> tuple[int, ...] | None:
        """``batch_shape`` of data ``[*batch_shape, D]`` other than ``[B, D]`` (whose rows :meth:`sample` flattens),
        ``None`` for ``[B, D]`` and what is no tensor (:meth:`SigmoidBeliefNet.check_data` names those).

        :raises DataError: a 0-d ``x``, or a last dimension other than ``D``."""
        if not isinstance(x, torch.Tensor) or x.dim() == 2:
            return None
        d = self.sbn.layer_sizes[0]
        if x.dim() == 0 or x.shape[-1] != d:
            raise DataError(f"SBNGibbs.sample: x{describe_origin()} has shape {tuple(x.shape)}, expected (..., {d}): "
                            f"one example ({d},) or a batch of any shape (..., {d})")
        return tuple(x.shape[:-1])

    def _init(self, xs: torch.Tensor, init: str, gen) -> list:
        sbn = self.sbn
        hs, h = [], xs
        if init == "guide":
            for enc in sbn.encoders:
                p = torch.sigmoid(enc(h))
                h = (torch.rand(p.shape, generator=gen, dtype=p.dtype, device=p.device) < p).to(p.dtype)
                hs.append(h)
        elif init == "zeros":
            shape = xs.shape[:-1]
            for size in sbn.layer_sizes[1:]:
                hs.append(torch.zeros(*shape, size, dtype=xs.dtype, device=xs.device))
        else:
            raise ConfigError(f"init must be 'guide' or 'zeros', got {init!r}")
        return hs
