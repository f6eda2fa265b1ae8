"""Variational autoencoder as a Pyro program.

Generative model and amortized guide [1, 2]:

.. math::

    p_\\theta(x, z) = \\mathcal N(z; 0, I)\\; p_\\theta(x \\mid \\mathrm{dec}_\\theta(z)),
    \\qquad
    q_\\phi(z \\mid x) = \\mathcal N\\big(z; \\mu_\\phi(x), \\operatorname{diag}\\sigma^2_\\phi(x)\\big),

with a Bernoulli likelihood (logits from the decoder) for binary data or a Gaussian one (mean from the decoder,
a learned scale per feature) for real data.  Train it with :class:`~hybridpgm.infer.SVIObjective` (any ELBO,
:class:`~hybridpgm.infer.IWAE` for the importance-weighted bound [3]) through
:func:`hybridpgm.fit`, or with plain :class:`pyro.infer.SVI`.  Its importance-sampling estimates
(:meth:`~VAE.log_weights`, :meth:`~VAE.log_likelihood`, :meth:`~VAE.elbo`) live in
:mod:`~hybridpgm.generative.vae_sampling`.

References:

1. D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
2. D. J. Rezende, S. Mohamed, D. Wierstra, *Stochastic Backpropagation and
   Approximate Inference in Deep Generative Models*, ICML 2014.
3. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, pyro_method

from hybridpgm.batch_shapes import as_given, over_batch_shape, refuse_one_example
from hybridpgm.checks import (check_device, flag, generator_or_none, layer_sizes, module_name,
                              positive_int, sample_count, site_prefix)
from hybridpgm.data.validation import (check_finite, check_model_input, check_num_data, defer_finite,
                                       describe_origin)
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.generative.vae_options import VAEOptions
from hybridpgm.generative.vae_sampling import VAEImportanceSampling
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.infer.particle_elbo import keeping_module_state
from hybridpgm.keyword_alias import keyword_only_soon, renamed_keyword
from hybridpgm.nn import checkpointed_call, mlp
from hybridpgm.param_store_scope import frozen_aware_parameter
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.precision_scope import any_autocast, exact_dtype
from hybridpgm.rng_scope import seeded_from_generator
from hybridpgm.serialization import serializable
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["VAE"]

LIKELIHOODS = ("bernoulli", "gaussian")

#: the methods that take one example ``[D]`` (and any batch shape ``[..., D]``), named by the training programs'
#: refusal of one example
_EVALUATION = "log_likelihood, elbo, log_weights and reconstruct"


@serializable
class VAE(VAEOptions, VAEImportanceSampling, PyroModule):
    """A VAE with MLP encoder and decoder.

    :param int x_dim: data dimension :math:`D` (data are ``batch x D``).
    :param int z_dim: latent dimension.
    :param hidden: hidden widths of the encoder (the decoder mirrors them).
    :param likelihood: ``"bernoulli"`` (data in {0, 1}) or ``"gaussian"``; this and the options below are
        keyword-only (passed by position, as older releases allowed, they work with a :class:`FutureWarning`).
    :param activation: hidden non-linearity (see :func:`hybridpgm.nn.mlp`).
    :param init: ``"xavier"`` or ``"he"``.
    :param batch_norm: batch normalisation in the hidden layers (in training mode every batch then needs at
        least two rows; inputs with leading particle dimensions are normalised over all their rows).
    :param min_scale: floor of the guide's standard deviations.
    :param checkpoint_activations: recompute the encoder's and decoder's activations in the backward pass
        instead of storing them (:func:`hybridpgm.nn.checkpointed_call`): less memory, one more forward.  This
        and ``min_scale`` may be changed later as attributes (checked, and saved with the model); ``x_dim``,
        ``z_dim``, ``likelihood`` and ``batch_norm`` are fixed (:mod:`~hybridpgm.generative.vae_options`).
    :param str name: the :class:`~pyro.nn.PyroModule` name: under Pyro's global param store (plain
        :class:`pyro.infer.SVI`) the parameters are ``"<name>.encoder$$$0.weight"``, ... instead of
        ``"encoder$$$0.weight"``, so two VAEs keep their parameters apart in one program (with the ``prefix``
        of :meth:`model` and :meth:`guide` for the site names; see :doc:`/pyro_native`).  Saved and loaded
        with the model.
    :raises ModelSpecError: ``x_dim``, ``z_dim`` or a hidden width that is not a positive integer (``bool``
        and floats are refused; ``hidden`` must be a sequence), an unknown likelihood, a ``min_scale``
        that is not a finite non-negative number, or a ``name`` that is not a string."""

    log_scale = frozen_aware_parameter("log_scale", """Log standard deviations of the Gaussian likelihood, ``[D]`` (only
        with ``likelihood="gaussian"``; a parameter frozen by ``requires_grad_(False)`` stays frozen under ``fit``
        and Pyro: :func:`~hybridpgm.param_store_scope.frozen_aware_parameter`).""")

    @keyword_only_soon("likelihood", "activation", "init", "batch_norm", "min_scale", "checkpoint_activations", "name")
    def __init__(self, x_dim: int, z_dim: int = 50, hidden: Sequence[int] = (400,), *, likelihood: str = "bernoulli",
                 activation: str = "relu", init: str = "xavier", batch_norm: bool = False, min_scale: float = 1e-4,
                 checkpoint_activations: bool = False, name: str = ""):
        super().__init__(module_name(name, "VAE"))
        if likelihood not in LIKELIHOODS:
            raise ModelSpecError(f"VAE likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        x_dim = positive_int(x_dim, "VAE x_dim", error=ModelSpecError)
        z_dim = positive_int(z_dim, "VAE z_dim", error=ModelSpecError)
        hidden = layer_sizes(hidden, "VAE hidden", error=ModelSpecError)
        self.min_scale = min_scale  # the options' checks are their setters' (VAEOptions)
        self.x_dim, self.z_dim, self.likelihood = x_dim, z_dim, likelihood
        # only hidden layers are normalised (mlp): without any there is no batch norm to need two rows
        self.batch_norm = flag(batch_norm, "VAE batch_norm", error=ModelSpecError) and bool(hidden)
        hidden = list(hidden)
        self.encoder = mlp([x_dim, *hidden, 2 * z_dim], activation, init, batch_norm)
        self.decoder = mlp([z_dim, *reversed(hidden), x_dim], activation, init, batch_norm)
        self.checkpoint_activations = checkpoint_activations  # refused without hidden layers: after the networks
        if likelihood == "gaussian":
            self.log_scale = torch.nn.Parameter(torch.zeros(x_dim))

    # -- parameter groups (the model's theta, the guide's phi) ---------------------
    def model_parameters(self) -> list[torch.nn.Parameter]:
        """Generative parameters :math:`\\theta`: the decoder's (and the Gaussian likelihood's ``log_scale``).  With
        :meth:`guide_parameters` they let :class:`~hybridpgm.infer.WakeSleep` and :class:`~hybridpgm.infer.RWS`
        split a VAE's parameters."""
        extra = [self.log_scale] if self.likelihood == "gaussian" else []
        return [*self.decoder.parameters(), *extra]

    def guide_parameters(self) -> list[torch.nn.Parameter]:
        """Recognition parameters :math:`\\phi`: the encoder's."""
        return list(self.encoder.parameters())

    # -- checks -----------------------------------------------------------------
    def _reference(self, role: str) -> torch.Tensor:
        """The tensor whose dtype and device the VAE computes in: the first floating-point parameter of the
        ``role`` network (``"encoder"`` or ``"decoder"``, whatever module replaced it: a custom
        :class:`torch.nn.Module`, a ``Sequential`` starting with ``Dropout``), else the first of the VAE's
        (a parameter-free network).  Read past :class:`~pyro.nn.PyroModule` (``_modules``), so no
        ``pyro.module`` is announced.

        :raises ModelSpecError: the VAE has no floating-point parameter at all."""
        own = torch.nn.Module.parameters(self)
        like = next((p for p in itertools.chain(self._modules[role].parameters(), own) if p.is_floating_point()),
                    None)
        if like is None:
            raise ModelSpecError(f"VAE: the {role} ({type(self._modules[role]).__name__}) and the rest of the VAE "
                                 "have no floating-point parameter to take the dtype and device from")
        return like

    def _check(self, x: torch.Tensor, values: bool = True, leading_dims: bool = False) -> torch.Tensor:
        """``x`` checked (shape, NaN/inf) and in the model's dtype, converted by the rule of
        :func:`hybridpgm.data.validation.as_model_dtype` (bool and exactly representable integers are converted;
        float64 data for a float32 model are refused).  The value check (binary, or finite; finite only with
        ``values=False``, as the guide asks) waits for the training step's one host read inside
        :func:`hybridpgm.fit` (:func:`~hybridpgm.train.deferred_checks.check_or_defer`).  ``leading_dims``
        accepts ``[..., batch, D]`` (the guide, given dreamed particles) besides ``batch x D``; one example ``[D]``
        is refused, saying that the batch dimension is missing (the evaluation methods flatten any batch shape
        into rows before they get here: :func:`~hybridpgm.batch_shapes.over_batch_shape`)."""
        weight = self._reference("encoder")
        refuse_one_example(x, self.x_dim, "VAE argument 'x'", _EVALUATION)
        if isinstance(x, torch.Tensor):
            check_device(x, weight, f"VAE argument 'x'{describe_origin()}")
        x = check_model_input(x, features=self.x_dim, dtype=weight.dtype, model="VAE", finite=False,
                              leading_dims=leading_dims)
        origin = describe_origin()
        if not x.numel():
            return x
        shown = as_given(x)  # the caller's shape, for the messages (a view: the checks read the same data)
        if self.likelihood == "bernoulli" and values:  # a binary check implies a finite one

            def not_binary() -> Exception:
                check_finite(shown, f"VAE argument 'x'{origin}")  # NaN/inf named as such
                return DataError(f"VAE with a Bernoulli likelihood needs binary data (0/1){origin}; binarize it "
                                 "(hybridpgm.data binarize='static'|'dynamic') or use likelihood='gaussian'")

            # x - x^2 vanishes exactly at 0 and 1 (in floating point too: a value beside 0 or 1 leaves a
            # representable difference) and is NaN at NaN/inf; one fused pass, then |.| in place and the max
            check_or_defer(torch.addcmul(x, x, x, value=-1).abs_().amax() == 0, not_binary, "VAE data 'x' is not 0/1")
        else:
            defer_finite(shown, f"VAE argument 'x'{origin}")
        return x

    def _plate(self, x: torch.Tensor, num_data: int | None, prefix: str = "", what: str = "VAE.model"):
        """The data plate ``prefix + "data"`` at dim ``-1``, scaled by ``num_data / batch`` where given.

        :raises ModelSpecError: inside a caller's plate at dim ``-1`` (see :mod:`hybridpgm.plate_dims`)."""
        batch = x.shape[-2]
        if not x.numel():
            raise DataError(f"VAE argument 'x'{describe_origin()} is an empty batch (shape {tuple(x.shape)}): a "
                            "Pyro plate needs at least one row")
        refuse_caller_plate(what, prefix + "data")
        if num_data is None:
            return pyro.plate(prefix + "data", batch, dim=-1)
        num_data = check_num_data(num_data, batch, model="VAE")
        return pyro.plate(prefix + "data", num_data, subsample=torch.arange(batch, device=x.device), dim=-1)

    def _likelihood(self, out: torch.Tensor, validate: bool | None = None) -> dist.TorchDistribution:
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=validate).to_event(1)
        return dist.Normal(out, self.log_scale.exp(), validate_args=validate).to_event(1)

    def _net(self, net: torch.nn.Module, x: torch.Tensor, role: str) -> torch.Tensor:
        """``net`` (the encoder or decoder) on ``x`` of shape ``[..., rows, features]``.  Without batch norm the
        layers take the leading dimensions as they are; with it they are flattened into one batch of rows
        (``BatchNorm1d`` would read a 3-d input as channels), and a training batch of one row is refused.

        Under :func:`torch.autocast` the network runs in the autocast dtype and its output is returned in at least
        float32 (:func:`_widened`), so the guide's :math:`z = \\mu + \\sigma \\epsilon`, both densities and
        the likelihood are computed as in float32, from the network's 16-bit output.

        :raises ConfigError: batch norm, training mode and one row."""
        if not self.batch_norm:
            return _widened(checkpointed_call(net, x, enabled=self.checkpoint_activations))
        lead = x.shape[:-1]
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
        if net.training and flat.shape[0] == 1:
            raise ConfigError(
                f"VAE(batch_norm=True) got a training batch of one row{describe_origin()} (the {role}'s input has "
                f"shape {tuple(x.shape)}): batch normalisation needs at least two rows per batch in training "
                "mode; train with batch_size >= 2 (in fit, a last incomplete batch of one row also does this: "
                "pass drop_last=True or another batch_size), or call vae.eval() to use the running statistics")
        out = _widened(checkpointed_call(net, flat, enabled=self.checkpoint_activations))
        return out if x.dim() == 2 else out.reshape(*lead, out.shape[-1])

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self._net(self.encoder, x, "encoder").chunk(2, dim=-1)
        return loc, F.softplus(raw) + self.min_scale

    # -- the Pyro program -------------------------------------------------------
    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_data: int | None = None, *, prefix: str = "") -> torch.Tensor:
        """:math:`p_\\theta(x, z)` over a data plate.

        :param x: observations, ``batch x D`` (one example ``[D]`` is refused: pass ``x[None]``); ``None``
            generates (Pyro's ``Predictive(vae.model, num_samples=S)(None)`` draws ``S x 1 x D``).
        :param num_data: full data size when ``x`` is a mini-batch; scales the plate by ``num_data / batch`` (the
            loss then estimates the full-data one).  With ``x=None``: how many rows to generate (default 1).
        :param str prefix: prepended to the names of the sites and of the plate (``prefix + "z"``, ``prefix + "x"``,
            ``prefix + "data"``), so that two models can share one Pyro program; the guide takes the same
            ``prefix``.  ``""`` (the default): ``"z"``, ``"x"``, ``"data"``.
        :raises DataError: bad ``x`` (shape, dtype, values; an empty batch; one example ``[D]`` without the batch
            dimension, the message showing ``x[None]``), or a ``num_data`` that is not an integer of at least the
            batch size (at least 1 with ``x=None``).
        :raises ConfigError: a ``prefix`` that is not a string.
        :raises ModelSpecError: called inside a caller's plate at dim ``-1``: the model opens its own plate there
            (:func:`~hybridpgm.plate_dims.refuse_caller_plate`; see "Two models in one program", docs/pyro_native.md).
        :raises DeviceError: ``x`` is not on the parameters' device."""
        prefix = site_prefix(prefix, "VAE.model")
        if x is None:
            rows = 1 if num_data is None else positive_int(
                num_data, "VAE.model(None, num_data=...): num_data, the number of rows to generate,", error=DataError)
            like = self._reference("decoder")
            refuse_caller_plate("VAE.model", prefix + "data")
            plate = pyro.plate(prefix + "data", rows, dim=-1)
            zeros = like.new_zeros((rows, self.z_dim))
        else:
            x = self._check(x)
            plate = self._plate(x, num_data, prefix)
            zeros = x.new_zeros(x.shape[:-1] + (self.z_dim,))
        with plate:
            # unvalidated where the deferred checks stand in: inside fit's step torch's support checks
            # would raise on bad data (or a guide's NaN z) before the step's read names them
            validate = False if x is not None else None  # generating (or x conditioned by a handler): validated
            z = pyro.sample(prefix + "z", dist.Normal(zeros, zeros.new_ones(()), validate_args=validate).to_event(1))
            out = self._net(self.decoder, z, "decoder")
            return pyro.sample(prefix + "x", self._likelihood(out, validate=validate), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, num_data: int | None = None, *, prefix: str = "") -> torch.Tensor:
        """:math:`q_\\phi(z \\mid x)`, amortized by the encoder.

        :param x: observations, ``batch x D``, or ``[..., batch, D]`` with leading (particle) dimensions, as the
            sleep phase of :class:`~hybridpgm.infer.WakeSleep` gives dreamed data; ``z`` is ``[..., batch, z_dim]``.
            One example ``[D]`` is refused (pass ``x[None]``).
        :param num_data: as in :meth:`model`.
        :param str prefix: as in :meth:`model` (the site ``prefix + "z"`` in the plate ``prefix + "data"``).
        :raises DataError: bad ``x`` (shape, dtype, NaN/inf; an empty batch; one example ``[D]``) or ``num_data``.
        :raises ConfigError: a training batch of one row with ``batch_norm=True``, or a ``prefix`` not a string.
        :raises ModelSpecError: as :meth:`model`, inside a caller's plate at dim ``-1``.
        :raises DeviceError: ``x`` is not on the parameters' device."""
        prefix = site_prefix(prefix, "VAE.guide")
        x = self._check(x, values=False, leading_dims=True)  # finite (the model checks the values)
        with self._plate(x, num_data, prefix, "VAE.guide"):
            loc, scale = self._encode(x)
            # unvalidated, as on the direct path: NaN data reach the loss, and the deferred check names them
            return pyro.sample(prefix + "z", dist.Normal(loc, scale, validate_args=False).to_event(1))

    # -- the direct path of DirectTrace_ELBO ---------------------------------------
    def direct_elbo_loss(self, x: torch.Tensor, num_data: int | None = None, *, prefix: str = "") -> torch.Tensor:
        """The single-sample negative ELBO of :meth:`model`/:meth:`guide`, as :class:`~pyro.infer.Trace_ELBO`
        computes it, without tracing (the direct path of :class:`~hybridpgm.infer.DirectTrace_ELBO`).

        .. math::

            -s \\sum_n \\big(\\log p(z_n) + \\log p_\\theta(x_n \\mid z_n) - \\log q_\\phi(z_n \\mid x_n)\\big),
            \\qquad z_n = \\mu_\\phi(x_n) + \\sigma_\\phi(x_n) \\odot \\epsilon_n,

        with :math:`s = \\text{num\\_data} / B` (1 without ``num_data``): the same checks, the same
        :math:`\\epsilon` drawn from the same RNG state and the same operations in the same order as the traced
        program, so loss and gradients equal ``Trace_ELBO``'s.

        :param x: observations, ``batch x D`` (one example ``[D]`` is refused, as by :meth:`model`: pass
            ``x[None]``).
        :param num_data: full data size when ``x`` is a mini-batch (see :meth:`model`).
        :param str prefix: the site names' prefix of :meth:`model` (the loss does not depend on it).
        :returns: a 0-d tensor.
        :raises DataError: as :meth:`model` (an empty batch and one example ``[D]`` included)."""
        site_prefix(prefix, "VAE.model")
        x = self._check(x)
        batch = x.shape[0]
        if not batch:
            raise DataError(f"VAE argument 'x'{describe_origin()} is an empty batch (shape {tuple(x.shape)}): "
                            "the ELBO of no data is not defined")
        scale = 1.0 if num_data is None else 1.0 * check_num_data(num_data, batch, model="VAE") / batch
        loc, sd = self._encode(x)
        posterior = dist.Normal(loc, sd, validate_args=False)
        z = posterior.rsample()
        prior = dist.Normal(x.new_zeros(x.shape[:-1] + (self.z_dim,)), x.new_ones(()), validate_args=False)
        out = self._net(self.decoder, z, "decoder")
        terms = (prior.log_prob(z).sum(-1), self._likelihood(out, validate=False).log_prob(x),
                 posterior.log_prob(z).sum(-1))
        if scale != 1.0:
            terms = tuple(t * scale for t in terms)
        log_prior, log_lik, log_q = (t.sum() for t in terms)
        return -(log_prior + log_lik - log_q)

    # -- utilities --------------------------------------------------------------
    @renamed_keyword(n="num_samples")
    @torch.no_grad()
    @keyword_only_soon("mean")
    def sample(self, num_samples: int, *, mean: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x D`` samples from :math:`p_\\theta(x)`, in the parameters' dtype and on their device.

        :param bool mean: return the likelihood's mean (Bernoulli probabilities; the default) instead of draws.
        :param num_samples: the number of samples (the old keyword ``n=`` still works for one release, with a
            :class:`FutureWarning`: :func:`~hybridpgm.keyword_alias.renamed_keyword`).
        :param generator: a :class:`torch.Generator` for the draws (on the parameters' device); ``None`` draws
            from torch's global stream.  The decoder runs with torch's global streams seeded from one draw of it
            whatever its mode (its dropout too), restored after (:func:`~hybridpgm.rng_scope.seeded_from_generator`).
        :raises ConfigError: ``num_samples`` is not a non-negative integer, ``mean`` not ``True`` or ``False``,
            ``num_samples == 1`` in training mode with ``batch_norm=True``, both ``num_samples`` and ``n``
            are given, or ``generator`` is neither a :class:`torch.Generator` nor ``None``."""
        mean = flag(mean, "VAE.sample mean")
        generator = generator_or_none(generator, "VAE.sample generator")
        num_samples = sample_count(num_samples, "VAE.sample num_samples")
        like = self._reference("decoder")
        with holding_global_state():  # every draw: none from the global stream amid another thread's fit step
            z = torch.randn(num_samples, self.z_dim, dtype=like.dtype, device=like.device, generator=generator)
            # a batch norm's running statistics as training left them; the decoder's draws from the generator
            with keeping_module_state(self), seeded_from_generator(generator, [self.decoder]):
                out = self._net(self.decoder, z, "decoder")
            if self.likelihood == "bernoulli":
                return torch.sigmoid(out) if mean else torch.bernoulli(torch.sigmoid(out), generator=generator)
            return out if mean else out + self.log_scale.exp() * torch.randn(out.shape, dtype=out.dtype,
                                                                             device=out.device, generator=generator)

    @over_batch_shape("VAE", lambda vae: vae.x_dim)
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode the guide's mean: the ``[..., D]`` mean of :math:`p_\\theta(x \\mid \\mu_\\phi(x))`, row by row.

        :param x: ``[..., D]`` data, checked as by :meth:`model`: ``batch x D``, one example ``[D]`` (a ``[D]``
            result, that of ``x[None]`` without its row dimension), or any batch shape (flattened into rows and
            restored: :func:`~hybridpgm.batch_shapes.over_batch_shape`).
        :param generator: a :class:`torch.Generator` (on any device) for the networks' draws (a dropout in
            training mode, or one that draws in evaluation mode too); ``None`` draws from torch's global streams.
            The encoder and decoder run, whatever their modes, with torch's global streams seeded from one draw of
            it and restored after (:func:`~hybridpgm.rng_scope.seeded_from_generator`, as in :meth:`sample`): the
            reconstruction is a function of its state and the caller's streams do not move.
        :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None``.
        :raises DataError: bad ``x`` (see :meth:`model`; a last dimension other than ``D``).
        :raises DeviceError: ``x`` is not on the parameters' device."""
        generator = generator_or_none(generator, "VAE.reconstruct generator")
        x = self._check(x)
        with keeping_module_state(self), seeded_from_generator(generator, [self.encoder, self.decoder]):
            out = self._net(self.decoder, self._encode(x)[0], "decoder")
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out


def _widened(out: torch.Tensor) -> torch.Tensor:
    """A network's output ``out`` in at least float32 where autocast is on
    (:func:`~hybridpgm.precision_scope.exact_dtype`), as it came elsewhere (a float64 VAE, or one made bfloat16
    by ``model.to(torch.bfloat16)``, keeps its dtype): one :func:`~hybridpgm.precision_scope.any_autocast` call
    outside autocast.

    Taken on in 16 bits, a bfloat16 :math:`\\mu_\\phi(x) \\approx 5` with :math:`\\sigma_\\phi(x) \\approx
    7 \\cdot 10^{-3}` rounded :math:`z` by up to :math:`0.016 \\approx 2\\sigma` and :math:`\\log q(z \\mid x)`
    with it (the ELBO was off by 640-800 nats), and float16's :math:`\\sigma \\approx 1.5 \\cdot 10^{-4}` at
    :math:`\\mu \\approx 20` gave NaN."""
    return out.to(exact_dtype(out)) if any_autocast() else out


#: the pair whose ELBO :meth:`VAE.direct_elbo_loss` computes (read by ``direct_elbo_path``)
VAE.direct_elbo_pair = (VAE.__dict__["model"], VAE.__dict__["guide"])
