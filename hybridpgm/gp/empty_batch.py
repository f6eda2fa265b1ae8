"""The distribution of a GP at no inputs, for the KISS-GP calls GPyTorch cannot answer at ``B = 0``.

GPyTorch's grid interpolation (``gpytorch.utils.interpolation.Interpolation.interpolate``) takes the maximum of
the inputs and raises a raw ``IndexError`` for an empty batch, so :meth:`~hybridpgm.gp.DeepKernelGP.posterior`,
``model(x)`` and :class:`~hybridpgm.gp.SVDeepKernelGP`'s ``model(x)`` on a grid answer ``B = 0`` test inputs
with :func:`empty_mvn` instead, as their ``predict`` answers with empty tensors.
"""

from __future__ import annotations

import gpytorch
import torch

__all__ = ["empty_mvn"]


def empty_mvn(h: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
    """The multivariate normal over no values at features ``h`` (``[*B, 0, F]``): mean ``[*B, 0]`` and covariance
    ``[*B, 0, 0]`` of zeros, in ``h``'s dtype and on its device (its ``log_prob`` of an empty vector is 0, its
    samples are empty).

    :param h: features of shape ``[*B, 0, F]``.
    """
    batch = h.shape[:-2]
    return gpytorch.distributions.MultivariateNormal(h.new_zeros(*batch, 0), h.new_zeros(*batch, 0, 0))
