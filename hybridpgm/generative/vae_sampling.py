"""Importance sampling with a :class:`~hybridpgm.generative.vae.VAE`'s guide as the proposal: the log-weights
:math:`\\log p_\\theta(x, z^{(k)}) - \\log q_\\phi(z^{(k)} \\mid x)`, :math:`z^{(k)} \\sim q_\\phi(z \\mid x)`, and
the estimates built on them, the importance-sampled :math:`\\log p_\\theta(x)` [3 of
:mod:`~hybridpgm.generative.vae`] and the Monte Carlo ELBO.

They are evaluation estimates, computed without a graph (under :func:`torch.no_grad`, so the ``num_samples`` draws
of :meth:`~VAEImportanceSampling.log_likelihood` never hold an autograd graph, whatever the caller's grad mode):
no gradient flows from them to the parameters or to ``x``.  The differentiable bounds are the training objectives,
:meth:`VAE.direct_elbo_loss <hybridpgm.generative.vae.VAE.direct_elbo_loss>` and
``SVIObjective(vae.model, vae.guide)`` (``IWAE(K)`` as its third argument for the importance-weighted bound).
An ``x`` that requires grad, in grad mode, is refused (a :class:`~hybridpgm.errors.ConfigError`) rather than
given a result that silently carries no gradient.

They take ``x`` of any batch shape ``[..., D]`` and answer with that batch shape (``[K, ...]`` for the
log-weights): one example ``[D]`` gives the 0-d result of ``x[None]`` without its row dimension, ``[A, B, D]`` the
result of its ``A * B`` rows reshaped (:func:`~hybridpgm.batch_shapes.over_batch_shape`: the batch dimensions are
flattened into rows before the draws, so with generators seeded alike the numbers are the same).

:class:`VAEImportanceSampling` is a base class of :class:`~hybridpgm.generative.vae.VAE`; its methods read the
VAE's :meth:`~hybridpgm.generative.vae.VAE.model`, :meth:`~hybridpgm.generative.vae.VAE.guide` and input check.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch

from hybridpgm.batch_shapes import over_batch_shape
from hybridpgm.checks import generator_keywords, generator_or_none, positive_int
from hybridpgm.errors import ConfigError
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.infer.iwae import importance_log_weights
from hybridpgm.infer.particle_elbo import keeping_module_state
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.rng_scope import seeded_globally_from

__all__ = ["VAEImportanceSampling"]


def _without_graph(method: Callable) -> Callable:
    """Decorate an estimate computed under :func:`torch.no_grad` to refuse, in grad mode, an ``x`` that requires
    grad: a :class:`~hybridpgm.errors.ConfigError` naming ``VAE.<method>``, where the result would silently
    carry no gradient (checked before the method turns grad mode off)."""
    @functools.wraps(method)
    def checked(self, x: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
            raise ConfigError(
                f"VAE.{method.__name__}: x requires grad, but the estimate is computed without a graph (no "
                "gradient reaches x or the parameters); pass x.detach() for its value, or train on a "
                "differentiable bound: VAE.direct_elbo_loss(x, num_data) or SVIObjective(vae.model, vae.guide"
                "[, IWAE(K)])")
        return method(self, x, *args, **kwargs)
    return checked


def _x_dim(vae: Any) -> int:
    """The VAE's data dimension :math:`D` (the width :func:`~hybridpgm.batch_shapes.over_batch_shape` checks)."""
    return vae.x_dim


class VAEImportanceSampling:
    """The importance-sampling estimates of a VAE: :meth:`log_weights`, :meth:`log_likelihood` and :meth:`elbo`."""

    @over_batch_shape("VAE", _x_dim, row_dim=1)
    @isolated_from_handlers
    @_without_graph
    @torch.no_grad()
    @own_param_store
    def log_weights(self, x: torch.Tensor, num_samples: int, chunk_size: int = 128, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples x ...`` importance log-weights :math:`\\log p(x, z^{(k)}) - \\log q(z^{(k)} \\mid x)`,
        :math:`z^{(k)} \\sim q`.

        :meth:`VAE.model <hybridpgm.generative.vae.VAE.model>` and :meth:`~hybridpgm.generative.vae.VAE.guide` run as
        a program of their own
        (:func:`~hybridpgm.handler_scope.isolated_from_handlers`), as do :meth:`log_likelihood` and :meth:`elbo`:
        the same values under any handler of the caller (``poutine.scale``, ``condition``, an outer
        ``pyro.plate``), and no site of theirs in a caller's trace, so a user's model can use them in a factor.

        :param x: ``[..., D]``: ``batch x D`` (an empty batch gives a ``num_samples x 0`` result), one example
            ``[D]`` (a ``[num_samples]`` result) or any batch shape (``num_samples x ...``; see the module
            docstring).
        :param int num_samples: importance samples :math:`K` per row.
        :param int chunk_size: samples drawn per pass of the model and guide (bounds memory; default ``128``).  The
            log-weights follow the same law for every ``chunk_size``, but under one seed (a ``generator`` in one
            state, or torch's global seed) another ``chunk_size`` gives other draws, and so other log-weights (the
            draws are consumed chunk by chunk), and so does :meth:`log_likelihood` (:meth:`elbo` draws in chunks of
            the default 128); fix it, as the seed, to reproduce a number.
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream (the
            guide's draws: :func:`~hybridpgm.rng_scope.seeded_globally_from`).
        :returns: the log-weights without a graph (no gradient; see the module docstring for the differentiable
            bounds).
        :raises ConfigError: ``num_samples`` or ``chunk_size`` is not a positive integer, ``generator`` is
            neither a :class:`torch.Generator` nor ``None``, or ``x`` requires grad in grad mode (the result would
            carry no gradient to it).
        :raises DataError: bad ``x`` (see :meth:`VAE.model <hybridpgm.generative.vae.VAE.model>`; a last dimension
            other than ``D``).
        :raises DeviceError: ``x`` is not on the parameters' device.
        """
        num_samples = positive_int(num_samples, "VAE num_samples (importance samples)")
        chunk_size = positive_int(chunk_size, "VAE chunk_size")
        generator = generator_or_none(generator, "VAE generator")
        x = self._check(x)
        if not x.shape[0]:  # no rows: no plate to run, an empty answer
            return x.new_zeros((num_samples, 0))
        chunks = []
        with keeping_module_state(self), seeded_globally_from(generator):
            for start in range(0, num_samples, chunk_size):
                k = min(chunk_size, num_samples - start)
                log_w, _ = importance_log_weights(self.model, self.guide, x, num_particles=k, max_plate_nesting=1)
                chunks.append(log_w)
        return torch.cat(chunks, dim=0)

    @over_batch_shape("VAE", _x_dim)
    @isolated_from_handlers
    @_without_graph
    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, num_samples: int = 1000, chunk_size: int = 128, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-sampled :math:`\\log p(x_n)` per row (``[...]``, the batch shape of ``x``), the guide as
        proposal [3]: :math:`\\log \\frac1K \\sum_k w_k`, a lower bound tightening as ``num_samples`` grows; an
        evaluation estimate without a graph (``vae.log_likelihood(x).sum().backward()`` raises torch's "does not
        require grad"): the importance-weighted bound to train on is ``SVIObjective(vae.model, vae.guide, IWAE(K))``.

        :param x: ``[..., D]`` data: ``batch x D``, one example ``[D]`` (a 0-d result) or any batch shape.
        :param int num_samples: importance samples :math:`K` (default ``1000``).
        :param int chunk_size: samples per pass (default ``128``); under one seed another ``chunk_size`` draws
            other samples, so another estimate of the same law (see :meth:`log_weights`).
        :param generator: a :class:`torch.Generator` for the draws, or ``None`` (see :meth:`log_weights`).
        :raises ConfigError: as :meth:`log_weights` (``x`` requiring grad in grad mode among them)."""
        draws = generator_keywords(generator, self.log_weights, what="VAE.log_likelihood generator")
        log_w = self.log_weights(x, num_samples, chunk_size, **draws)
        return torch.logsumexp(log_w, dim=0) - math.log(num_samples)

    @over_batch_shape("VAE", _x_dim)
    @isolated_from_handlers
    @_without_graph
    @torch.no_grad()
    def elbo(self, x: torch.Tensor, num_samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Monte Carlo ELBO per data point (``[...]``, the batch shape of ``x``): the mean of :meth:`log_weights`, an
        evaluation estimate without a graph (``vae.elbo(x).sum().backward()`` raises torch's "does not require
        grad"): the ELBO to train on is :meth:`VAE.direct_elbo_loss <hybridpgm.generative.vae.VAE.direct_elbo_loss>`
        or ``SVIObjective(vae.model, vae.guide)``.

        :param x: ``[..., D]`` data: ``batch x D``, one example ``[D]`` (a 0-d result) or any batch shape.
        :param int num_samples: draws of :math:`z` per row (default ``1``).
        :param generator: a :class:`torch.Generator` for the draws, or ``None`` (see :meth:`log_weights`).
        :raises ConfigError: as :meth:`log_weights` (``x`` requiring grad in grad mode among them)."""
        draws = generator_keywords(generator, self.log_weights, what="VAE.elbo generator")
        return self.log_weights(x, num_samples, **draws).mean(dim=0)
