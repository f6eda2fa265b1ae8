"""The likelihoods exact GP inference accepts: Gaussian, with one output per example and one noise variance
for every example.

:class:`~hybridpgm.gp.DeepKernelGP` computes the exact marginal likelihood and posterior, which need a Gaussian
likelihood (a non-Gaussian one -- classification, counts -- is for the variational
:class:`~hybridpgm.gp.SVDeepKernelGP`).  Of the Gaussian ones it takes those with a single output
(not :class:`~gpytorch.likelihoods.MultitaskGaussianLikelihood`) and homoskedastic noise: GPyTorch adds the ``N``
training noises of a per-example noise model (:class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood`,
heteroskedastic noise) to any batch of ``N`` points and none to batches of other sizes, so predictions,
mini-batch losses and conditioning on other data would be silently wrong.
"""

from __future__ import annotations

import gpytorch
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase  # what exact inference accepts
from gpytorch.likelihoods.noise_models import _HomoskedasticNoiseBase

from hybridpgm.errors import ModelSpecError

__all__ = ["check_exact_likelihood"]


def check_exact_likelihood(likelihood: gpytorch.likelihoods.Likelihood | None) -> None:
    """Raise :class:`~hybridpgm.errors.ModelSpecError`, naming the class of ``likelihood``, unless it is ``None``
    (the default :class:`~gpytorch.likelihoods.GaussianLikelihood`) or a Gaussian likelihood of one output with
    one noise variance for every example (see the module's description); a
    :class:`~gpytorch.likelihoods.Likelihood` is checked before, by
    :func:`~hybridpgm.gp.feature_gp.check_module`."""
    if likelihood is not None and not isinstance(likelihood, _GaussianLikelihoodBase):
        raise ModelSpecError(
            f"DeepKernelGP likelihood is a {type(likelihood).__name__}: exact GP inference (the exact "
            "marginal likelihood and posterior) needs a Gaussian likelihood (GaussianLikelihood, "
            "FixedNoiseGaussianLikelihood, ...); for a non-Gaussian likelihood use the variational "
            "hybridpgm.gp.SVDeepKernelGP")
    if isinstance(likelihood, gpytorch.likelihoods.MultitaskGaussianLikelihood):
        raise ModelSpecError(
            f"DeepKernelGP likelihood is a {type(likelihood).__name__}, a likelihood of several outputs per "
            "example: DeepKernelGP is a single-output GP (train_y of shape N); use GaussianLikelihood, or "
            "one DeepKernelGP per output")
    if likelihood is not None and not isinstance(getattr(likelihood, "noise_covar", None),
                                                 _HomoskedasticNoiseBase):
        raise ModelSpecError(
            f"DeepKernelGP likelihood is a {type(likelihood).__name__}, whose noise is per example (noise "
            f"model {type(getattr(likelihood, 'noise_covar', None)).__name__}): GPyTorch adds the N training "
            "noises to any batch of N points (test points, a mini-batch) and none to batches of other sizes, "
            "so predictions, mini-batch losses and set_train_data would be silently wrong; use "
            "GaussianLikelihood (one learned noise variance)")
