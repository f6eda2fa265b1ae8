"""``posterior(x)`` of a :class:`~hybridpgm.gp.SVDeepKernelGP` (a mixin of the model: :class:`SVPosterior`), the
call :class:`~hybridpgm.gp.DeepKernelGP` and :class:`~hybridpgm.gp.GPLSTM` have (:mod:`hybridpgm.gp.deep_kernel_call`),
so code written for the exact deep-kernel GP runs on the variational one.

For the variational GP the distribution over the latent function at test inputs ``x`` is the variational
posterior's marginal at their features :math:`h = g_w(x)`,

.. math::

    q(f_*) = \\int p(f_* \\mid u)\\, q(u)\\, du
        = \\mathcal N\\bigl(m_* + K_{*u} K_{uu}^{-1} (m - m_u),\\;
          K_{**} - K_{*u} K_{uu}^{-1} (K_{uu} - S) K_{uu}^{-1} K_{u*}\\bigr)

for :math:`q(u) = \\mathcal N(m, S)` at the inducing points (Hensman, Fusi, Lawrence, *Gaussian Processes for Big
Data*, UAI 2013; Wilson, Hu, Salakhutdinov, Xing, *Stochastic Variational Deep Kernel Learning*, NeurIPS 2016;
GPyTorch's ``VariationalStrategy`` computes it, in the whitened parametrisation).  It is what the model's
eval-mode call ``model(x)`` gives, in the same way as the exact GP's ``posterior(x)`` is its eval-mode ``model(x)``.
"""

from __future__ import annotations

import gpytorch
import torch

from hybridpgm.module_modes import keeping_modes

__all__ = ["SVPosterior"]


class SVPosterior:
    """Mixin of :class:`~hybridpgm.gp.SVDeepKernelGP`: :meth:`posterior`."""

    def posterior(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """:math:`q(f_*)` at test inputs ``x`` (``B x ...``): an MVN over ``B`` values (shape ``[B]``; ``B = 0``
        gives an empty one), what ``model(x)`` gives in eval mode, in either mode of the model.  The call runs
        in eval mode (a dropout extractor off, batch norm on its running statistics, under KISS-GP the grid
        scaling recorded in training, which ``x`` does not change) and gives every sub-module its own mode back.
        Differentiable when gradients are enabled (in the network weights, the kernel and :math:`q(u)`);
        ``model.likelihood(model.posterior(x))`` is the predictive distribution of the targets, whose mean and
        variance :meth:`~hybridpgm.gp.SVDeepKernelGP.predict` gives without gradients.

        :param x: test inputs ``B x ...`` (see :meth:`~hybridpgm.gp.SVDeepKernelGP.features`).
        :raises DataError: see :meth:`~hybridpgm.gp.SVDeepKernelGP.features`.
        :raises DeviceError: ``x`` is not on the model's device."""
        with keeping_modes(self):
            self.eval()
            return self(x)
