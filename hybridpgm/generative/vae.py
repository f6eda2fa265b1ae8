"""Variational autoencoder as a Pyro program.

Generative model and amortized guide [1, 2]:

.. math::

    p_\\theta(x, z) = \\mathcal N(z; 0, I)\\; p_\\theta(x \\mid \\mathrm{dec}_\\theta(z)),
    \\qquad
    q_\\phi(z \\mid x) = \\mathcal N\\big(z; \\mu_\\phi(x), \\operatorname{diag}\\sigma^2_\\phi(x)\\big),

with a Bernoulli likelihood (logits from the decoder) for binary data or a Gaussian one (mean from the decoder,
a learned scale per feature) for real data.  Train it with :class:`~hybridpgm.infer.SVIObjective` (any ELBO,
:class:`~hybridpgm.infer.IWAE` for the importance-weighted bound [3]) through
:func:`hybridpgm.fit`, or with plain :class:`pyro.infer.SVI`.

The class is assembled from one module per concept, each a base class of :class:`VAE` (their methods are
:class:`VAE`'s): the options kept as attributes (:mod:`~hybridpgm.generative.vae_options`), the input checks
(:mod:`~hybridpgm.generative.vae_inputs`), the networks and likelihood (:mod:`~hybridpgm.generative.vae_networks`),
the direct ELBO path (:mod:`~hybridpgm.generative.vae_direct`), sampling and reconstruction
(:mod:`~hybridpgm.generative.vae_generation`) and the importance-sampling estimates (:meth:`~VAE.log_weights`,
:meth:`~VAE.log_likelihood`, :meth:`~VAE.elbo`: :mod:`~hybridpgm.generative.vae_sampling`).

References:

1. D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*, ICLR 2014.
2. D. J. Rezende, S. Mohamed, D. Wierstra, *Stochastic Backpropagation and
   Approximate Inference in Deep Generative Models*, ICML 2014.
3. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
"""

from __future__ import annotations

from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method

from hybridpgm.checks import flag, layer_sizes, module_name, positive_int, site_prefix
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.vae_direct import VAEDirectELBO
from hybridpgm.generative.vae_generation import VAEGeneration
from hybridpgm.generative.vae_inputs import _EVALUATION, VAEInputs  # noqa: F401 (_EVALUATION: the old path)
from hybridpgm.generative.vae_networks import VAENetworks, _widened  # noqa: F401 (_widened: the old path)
from hybridpgm.generative.vae_options import VAEOptions
from hybridpgm.generative.vae_sampling import VAEImportanceSampling
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.nn import mlp
from hybridpgm.param_store_scope import frozen_aware_parameter
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.serialization import serializable

__all__ = ["VAE"]

LIKELIHOODS = ("bernoulli", "gaussian")


@serializable
class VAE(VAEOptions, VAEInputs, VAENetworks, VAEDirectELBO, VAEGeneration, VAEImportanceSampling, PyroModule):
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

    # -- the Pyro program -------------------------------------------------------
    @pyro_method
    def model(self, x: torch.Tensor | None = None, num_data: int | None = None, *fields: object,
              prefix: str = "") -> torch.Tensor:
        """:math:`p_\\theta(x, z)` over a data plate.

        :param x: observations, ``batch x D`` (one example ``[D]`` is refused: pass ``x[None]``); ``None``
            generates (Pyro's ``Predictive(vae.model, num_samples=S)(None)`` draws ``S x 1 x D``).
        :param num_data: full data size when ``x`` is a mini-batch; scales the plate by ``num_data / batch`` (the
            loss then estimates the full-data one).  With ``x=None``: how many rows to generate (default 1).
        :param fields: nothing: positional arguments after ``num_data`` are refused (a batch of several fields
            that ``fit`` or :class:`~pyro.infer.SVI` unpacked; :mod:`~hybridpgm.generative.vae_inputs`).
        :param str prefix: prepended to the names of the sites and of the plate (``prefix + "z"``, ``prefix + "x"``,
            ``prefix + "data"``), so that two models can share one Pyro program; the guide takes the same
            ``prefix``.  ``""`` (the default): ``"z"``, ``"x"``, ``"data"``.
        :raises DataError: bad ``x`` (shape, dtype, values; an empty batch; one example ``[D]`` without the batch
            dimension, the message showing ``x[None]``), or a ``num_data`` that is not an integer of at least the
            batch size (at least 1 with ``x=None``), or a batch of several fields: the ``D`` tensors of shape
            ``[batch]`` (one per feature) that torch's ``default_collate`` makes of a Dataset whose ``__getitem__``
            returns a list or tuple of ``D`` numbers (return one tensor of shape ``(D,)`` instead), or positional
            arguments after ``num_data`` (an ``(x, labels, ...)`` batch).
        :raises ConfigError: a ``prefix`` that is not a string.
        :raises ModelSpecError: called inside a caller's plate at dim ``-1``: the model opens its own plate there
            (:func:`~hybridpgm.plate_dims.refuse_caller_plate`; see "Two models in one program", docs/pyro_native.md).
        :raises DeviceError: ``x`` is not on the parameters' device."""
        prefix = site_prefix(prefix, "VAE.model")
        self._arguments(x, num_data, fields, "model")
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
    def guide(self, x: torch.Tensor, num_data: int | None = None, *fields: object, prefix: str = "") -> torch.Tensor:
        """:math:`q_\\phi(z \\mid x)`, amortized by the encoder.

        :param x: observations, ``batch x D``, or ``[..., batch, D]`` with leading (particle) dimensions, as the
            sleep phase of :class:`~hybridpgm.infer.WakeSleep` gives dreamed data; ``z`` is ``[..., batch, z_dim]``.
            One example ``[D]`` is refused (pass ``x[None]``).
        :param num_data: as in :meth:`model`.
        :param fields: nothing, as in :meth:`model`.
        :param str prefix: as in :meth:`model` (the site ``prefix + "z"`` in the plate ``prefix + "data"``).
        :raises DataError: bad ``x`` (shape, dtype, NaN/inf; an empty batch; one example ``[D]``) or ``num_data``,
            or a batch of several fields (as :meth:`model`).
        :raises ConfigError: a training batch of one row with ``batch_norm=True``, or a ``prefix`` not a string.
        :raises ModelSpecError: as :meth:`model`, inside a caller's plate at dim ``-1``.
        :raises DeviceError: ``x`` is not on the parameters' device."""
        prefix = site_prefix(prefix, "VAE.guide")
        self._arguments(x, num_data, fields, "guide")
        x = self._check(x, values=False, leading_dims=True)  # finite (the model checks the values)
        with self._plate(x, num_data, prefix, "VAE.guide"):
            loc, scale = self._encode(x)
            # unvalidated, as on the direct path: NaN data reach the loss, and the deferred check names them
            return pyro.sample(prefix + "z", dist.Normal(loc, scale, validate_args=False).to_event(1))



#: the pair whose ELBO :meth:`VAE.direct_elbo_loss` computes (read by ``direct_elbo_path``)
VAE.direct_elbo_pair = (VAE.__dict__["model"], VAE.__dict__["guide"])
