"""The exact marginal likelihood of a :class:`~hybridpgm.gp.DeepKernelGP`, per example, on its training data or a
batch (a mixin of the model: :class:`MarginalLikelihood`).

Above ``gpytorch.settings.max_cholesky_size`` GPyTorch estimates it by conjugate gradients and stochastic Lanczos
quadrature; here the probe vectors come from a generator seeded with 0 (:func:`~hybridpgm.rng_scope.fixed_rng`), or,
inside :func:`hybridpgm.fit`'s step, from ``fit``'s stream (see :mod:`hybridpgm.gp.deep_kernel`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch

from hybridpgm.gp.feature_gp import check_inputs, check_targets, check_training_batch
from hybridpgm.gp.prediction_cache import clear_gpytorch_caches
from hybridpgm.rng_scope import fixed_rng

__all__ = ["MarginalLikelihood"]


class MarginalLikelihood:
    """Mixin of :class:`~hybridpgm.gp.DeepKernelGP`: :meth:`marginal_log_likelihood` from its feature extractor
    (``_extract``), its GP (``gp``, ``mll``, ``gp_inputs``, ``_gp_precision``) and its training data
    (``training_data``, ``example_shape``, ``train_x``)."""

    def marginal_log_likelihood(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log marginal likelihood per example, :math:`\\log p(y \\mid X) / n`
        (plus log-priors of the hyperparameters), on the training data by default.

        Above ``gpytorch.settings.max_cholesky_size`` (800) it is GPyTorch's stochastic estimate (CG and
        stochastic Lanczos quadrature), here with probe vectors from a generator seeded with 0, so two calls
        agree and the global RNG does not move for them; for the exact value wrap the call in
        ``gpytorch.settings.max_cholesky_size(n)`` with ``n >= N``.  Only those probes are fixed: the feature
        extractor runs on the caller's streams, so in train mode its dropout draws a fresh mask each call
        (from, and advancing, torch's global generator), as in a training step.  In train mode under KISS-GP
        it records the grid scaling of ``x``'s features, as a training step does.

        :param x: inputs ``N x ...`` (default: the training inputs).
        :param y: targets ``N`` (default: the training targets).
        :returns: a scalar.
        :raises DataError: ``x``/``y`` of the wrong shape or dtype, an empty batch, or NaN/inf values; by
            default, training data that went to the meta device (see :meth:`training_data`).
        :raises DeviceError: ``x`` or ``y`` is not on the model's device.
        """
        return self._marginal_log_likelihood(x, y, probes=lambda: fixed_rng(self.train_x.device))

    def _marginal_log_likelihood(self, x: torch.Tensor | None, y: torch.Tensor | None,
                                 probes: Callable[[], ContextManager] = contextlib.nullcontext) -> torch.Tensor:
        """:meth:`marginal_log_likelihood` with GPyTorch's probe vectors drawn inside ``probes()`` (default: from
        the caller's streams, as :func:`hybridpgm.fit`'s step does).  The features are computed outside it:
        a dropout extractor draws its masks from the caller's streams either way."""
        if x is None or y is None:
            train_x, train_y = self.training_data()
            x = train_x if x is None else x
            y = train_y if y is None else y
        # inside fit's step: no host sync of its own
        check_training_batch(x, y, self.example_shape, dtype=self.train_x.dtype, device=self.train_x.device)
        clear_gpytorch_caches(self.gp)  # in eval mode GPyTorch keeps a grid kernel's matrix of earlier hyperparameters
        try:
            with self._gp_precision(self._extract(x)) as (h, _), probes():  # the network under autocast, not the GP
                return self.mll(self.gp.forward(self.gp_inputs(h)), y)
        except Exception:  # bad data that broke GPyTorch first (a deferred check has not been read yet)
            check_inputs(x, self.example_shape, "x")
            check_targets(y, x.shape[0], "y")
            raise
