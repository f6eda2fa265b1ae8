"""The direct path of :class:`~hybridpgm.infer.DirectTrace_ELBO` for a :class:`~hybridpgm.generative.vae.VAE`:
its single-sample negative ELBO computed without tracing, equal (loss and gradients) to what
:class:`~pyro.infer.Trace_ELBO` computes of :meth:`VAE.model <hybridpgm.generative.vae.VAE.model>` and
:meth:`~hybridpgm.generative.vae.VAE.guide` [1 of :mod:`~hybridpgm.generative.vae`].

:class:`VAEDirectELBO` is a base class of :class:`~hybridpgm.generative.vae.VAE`; ``VAE.direct_elbo_pair`` names
the pair of programs whose ELBO it computes (read by :func:`~hybridpgm.infer.direct_trace_elbo.direct_elbo_path`).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from hybridpgm.checks import site_prefix
from hybridpgm.data.validation import check_num_data, describe_origin
from hybridpgm.errors import DataError
from hybridpgm.generative.vae_networks import VAENetworks

__all__ = ["VAEDirectELBO"]


class VAEDirectELBO:
    """:meth:`direct_elbo_loss` of a :class:`~hybridpgm.generative.vae.VAE` (a mixin; see the module docstring)."""

    def direct_elbo_loss(self, x: torch.Tensor, num_data: int | None = None, *fields: object,
                         prefix: str = "") -> torch.Tensor:
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
        :param fields: nothing: positional arguments after ``num_data`` (a batch of several fields) are refused,
            as by :meth:`model`.
        :param str prefix: the site names' prefix of :meth:`model` (the loss does not depend on it).
        :returns: a 0-d tensor.
        :raises DataError: as :meth:`model` (an empty batch, one example ``[D]`` and the per-feature tensors of a
            Dataset returning lists of numbers included)."""
        site_prefix(prefix, "VAE.model")
        self._arguments(x, num_data, fields, "direct_elbo_loss")
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
        terms = (prior.log_prob(z).sum(-1), self._log_likelihood(out, x), posterior.log_prob(z).sum(-1))
        if scale != 1.0:
            terms = tuple(t * scale for t in terms)
        log_prior, log_lik, log_q = (t.sum() for t in terms)
        return -(log_prior + log_lik - log_q)

    def _log_likelihood(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p_\\theta(x_n \\mid z_n)` per row, ``[batch]``, from the decoder's output ``out``: the
        ``_likelihood(out, validate=False).log_prob(x)`` of the traced program.  For a Bernoulli likelihood whose
        ``_likelihood`` is the VAE's own and ``out`` of ``x``'s shape, the same value and gradients without
        building the two distribution objects, and with the sign taken after the row sums, not over the
        ``batch x D`` terms (negation is exact and a sum's rounding is symmetric in sign, so the bits are
        :class:`~torch.distributions.Bernoulli`'s: ``-bce(out, x)`` summed over the last dimension, as
        :class:`~torch.distributions.Independent` sums it)."""
        if self.likelihood == "bernoulli" and out.shape == x.shape \
                and type(self)._likelihood is VAENetworks._likelihood:
            return F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1).neg()
        return self._likelihood(out, validate=False).log_prob(x)
