"""``model(x)`` of a :class:`~hybridpgm.gp.DeepKernelGP` (and :class:`~hybridpgm.gp.GPLSTM`), GPyTorch's way to
predict (a mixin of the model: :class:`PosteriorCall`).

GPyTorch users predict with ``model.eval(); model.likelihood(model(x))``.  In eval mode ``model(x)`` is the
posterior of the latent function given the training data,

.. math::

    p(f_* \\mid y) = \\mathcal N\\bigl(m_* + K_{*n} (K_{nn} + \\sigma^2 I)^{-1} (y - m_n),\\;
        K_{**} - K_{*n} (K_{nn} + \\sigma^2 I)^{-1} K_{n*}\\bigr)

on the deep-kernel features (Wilson et al., *Deep Kernel Learning*, AISTATS 2016; Rasmussen and Williams,
*Gaussian Processes for Machine Learning*, 2006, eq. 2.24): :meth:`~hybridpgm.gp.DeepKernelGP.posterior` itself,
the distribution over ``f`` that :class:`~hybridpgm.gp.SVDeepKernelGP` returns as ``q(f)``; under
``gpytorch.settings.prior_mode(True)`` GPyTorch answers with the prior at ``x`` instead.

In train mode a GPyTorch ``ExactGP`` returns the prior, for ``ExactMarginalLogLikelihood(likelihood,
model)(model(train_x), train_y)``.  That loss refuses this model (it is no ``gpytorch.models.GP``: its GP is
``model.gp``, its loss :meth:`~hybridpgm.gp.DeepKernelGP.marginal_log_likelihood`), and under KISS-GP the prior
does not record the grid scaling a training step records, so the prior would be of no use there and would give
prior predictions silently to a caller who forgot ``model.eval()``: train mode raises
:class:`~hybridpgm.errors.ConfigError` naming the calls to use, except under ``prior_mode``, which asks for the
prior (:meth:`~hybridpgm.gp.DeepKernelGP.prior`).
"""

from __future__ import annotations

import gpytorch
import torch

from hybridpgm.errors import ConfigError

__all__ = ["PosteriorCall"]


class PosteriorCall:
    """Mixin of :class:`~hybridpgm.gp.DeepKernelGP`: :meth:`forward` from its ``posterior`` and ``prior``."""

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """``model(x)``: in eval mode the posterior of the latent function at ``x`` (``B x ...``), an MVN over
        ``B`` values, as :meth:`~hybridpgm.gp.DeepKernelGP.posterior` gives it (the prior under
        ``gpytorch.settings.prior_mode``); ``model.likelihood(model(x))`` is the predictive distribution of the
        targets, whose mean and variance :meth:`~hybridpgm.gp.DeepKernelGP.predict` gives without gradients.

        :param x: test inputs ``B x ...`` (see :meth:`~hybridpgm.gp.DeepKernelGP.features`).
        :raises ConfigError: in train mode (outside ``prior_mode``), naming ``model.eval()``, ``posterior``,
            ``predict``, ``prior`` and ``marginal_log_likelihood``.
        :raises DataError: see :meth:`~hybridpgm.gp.DeepKernelGP.features`.
        :raises DeviceError: ``x`` is not on the model's device."""
        if not self.training:
            return self.posterior(x)
        if gpytorch.settings.prior_mode.on():
            return self.prior(x)
        name = type(self).__name__
        raise ConfigError(f"{name}(x) in train mode: the model predicts in eval mode (model.eval(), then "
                          f"model(x) or model.likelihood(model(x)) as in GPyTorch), or call model.posterior(x) "
                          f"(the latent f given the training data, in either mode), model.predict(x) (the "
                          f"targets' mean and variance) or model.prior(x); the training loss is "
                          f"model.marginal_log_likelihood(), not GPyTorch's ExactMarginalLogLikelihood of "
                          f"model(train_x)")
