"""The :class:`~hybridpgm.generative.vae.VAE`'s networks at work: the encoder's Gaussian
:math:`q_\\phi(z \\mid x) = \\mathcal N(\\mu_\\phi(x), \\operatorname{diag}\\sigma^2_\\phi(x))` with
:math:`\\sigma_\\phi = \\operatorname{softplus}(\\cdot) + \\text{min\\_scale}`, the decoder's likelihood
(Bernoulli logits or Gaussian means with the learned ``log_scale``), batch norm over leading dimensions,
activation checkpointing, and the widening of 16-bit outputs under :func:`torch.autocast`.

:class:`VAENetworks` is a base class of :class:`~hybridpgm.generative.vae.VAE` (a mixin reading its
``encoder``, ``decoder`` and options).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from hybridpgm.data.validation import describe_origin
from hybridpgm.errors import ConfigError
from hybridpgm.nn import checkpointed_call
from hybridpgm.precision_scope import any_autocast, exact_dtype

__all__ = ["VAENetworks"]


class VAENetworks:
    """The encoder, decoder and likelihood of a :class:`~hybridpgm.generative.vae.VAE` (a mixin; see the module
    docstring)."""

    def _likelihood(self, out: torch.Tensor, validate: bool | None = None) -> dist.TorchDistribution:
        """:math:`p_\\theta(x \\mid z)` from the decoder's output ``out`` ``[..., D]``, one event of ``D``."""
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
        """The guide's means and standard deviations, each ``[..., z_dim]``."""
        loc, raw = self._net(self.encoder, x, "encoder").chunk(2, dim=-1)
        return loc, F.softplus(raw) + self.min_scale


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
