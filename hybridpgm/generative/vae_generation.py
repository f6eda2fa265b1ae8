"""Generation and reconstruction with a :class:`~hybridpgm.generative.vae.VAE`: samples of
:math:`p_\\theta(x) = \\int p(z)\\, p_\\theta(x \\mid z)\\, dz` (:meth:`~VAEGeneration.sample`) and the decoded
guide mean :math:`\\mathbb E[x \\mid \\mu_\\phi(x)]` (:meth:`~VAEGeneration.reconstruct`), computed without a
graph, their draws from a caller's :class:`torch.Generator` where one is given.

:class:`VAEGeneration` is a base class of :class:`~hybridpgm.generative.vae.VAE` (a mixin reading its networks
and input check).
"""

from __future__ import annotations

import torch

from hybridpgm.batch_shapes import over_batch_shape
from hybridpgm.checks import flag, generator_or_none, sample_count
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.infer.particle_elbo import keeping_module_state
from hybridpgm.keyword_alias import keyword_only_soon, renamed_keyword
from hybridpgm.rng_scope import seeded_from_generator

__all__ = ["VAEGeneration"]


class VAEGeneration:
    """:meth:`sample` and :meth:`reconstruct` of a :class:`~hybridpgm.generative.vae.VAE` (a mixin; see the module
    docstring)."""

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
