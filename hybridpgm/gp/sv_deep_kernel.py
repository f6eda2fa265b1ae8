"""Stochastic variational deep kernel learning (SV-DKL) as a Pyro model/guide.

A sparse variational GP [2] over network features :math:`h = g_w(x)`, with
inducing values :math:`u = f(Z)` at inducing points :math:`Z` in feature space
(learned) or on a KISS-GP grid [3], and variational posterior
:math:`q(u) = \\mathcal N(m, S)`.  The evidence lower bound

.. math::

    \\mathcal L = \\sum_{i=1}^N \\mathbb E_{q(f_i)} \\log p(y_i \\mid f_i)
        - \\mathrm{KL}\\bigl(q(u) \\,\\|\\, p(u)\\bigr)

decomposes over examples, so it is estimated without bias from a mini-batch
(the likelihood term scaled by :math:`N / B`), which is what SV-DKL [1] uses
to train the network, the kernel and :math:`q(u)` jointly on large data and
with non-Gaussian likelihoods (classification).

:meth:`SVDeepKernelGP.model` / :meth:`SVDeepKernelGP.guide` (:mod:`hybridpgm.gp.sv_program`) are the Pyro
program of GPyTorch's Pyro integration (``pyro_model`` / ``pyro_guide`` and
the likelihood's ``pyro_model``, as in :class:`gpytorch.models.PyroGP`), so a
GP can be one block of a larger Pyro model.  They register the module as
``pyro.module`` does (:func:`~hybridpgm.module_registration.register_module`, which does not warn of a frozen
feature extractor at every step), so plain ``SVI`` finds its parameters in Pyro's param store;
:func:`hybridpgm.fit` runs in a scope of the store of its own.

GPyTorch memoizes :math:`p(u)`, :math:`q(u)` and the Cholesky factor of :math:`K_{uu}` on the variational strategy
and drops the memo only on a change of mode (and, in train mode, when the strategy is called): in eval mode it would
answer from the parameters of its first call.  Every call here (:meth:`~SVDeepKernelGP.model`,
:meth:`~SVDeepKernelGP.guide`, ``model(x)``, :meth:`~SVDeepKernelGP.predict`) drops it first, so the answers depend
only on the current parameters, in either mode; in eval mode that costs one :math:`O(M^3)` factorisation a call, as
every call in train mode already pays.

Under autocast (``fit(precision="bf16"|"fp16")``) only the feature extractor runs in the low precision: its
features are cast to the GP's dtype (that of the inducing points) and the GP -- :math:`q(u)`, the Cholesky
factors, the sampling of :math:`f` and the likelihood -- computes with autocast off (in bfloat16 the inducing
covariance is not even numerically positive definite).

References:

1. A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Stochastic Variational
   Deep Kernel Learning*, NeurIPS 2016.
2. J. Hensman, N. Fusi, N. D. Lawrence, *Gaussian Processes for Big Data*, UAI 2013;
   J. Hensman, A. Matthews, Z. Ghahramani, *Scalable Variational Gaussian
   Process Classification*, AISTATS 2015.
3. A. G. Wilson, H. Nickisch, *Kernel Interpolation for Scalable Structured
   Gaussian Processes (KISS-GP)*, ICML 2015.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import gpytorch
import torch

from hybridpgm.checks import as_integer, positive_int
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp.empty_batch import empty_mvn
from hybridpgm.gp.extractor import extract_features
from hybridpgm.gp.feature_gp import (GPPrediction, check_grid_bounds, check_inputs_deferred, check_module,
                                     default_kernel, extractor_input_dtype)
from hybridpgm.gp.grid_scaling import RunningScaleToGrid
from hybridpgm.gp.kernel_checks import check_gp_parts
from hybridpgm.gp.prediction_cache import clear_gpytorch_caches
from hybridpgm.gp.sv_inducing import check_inducing_points
from hybridpgm.gp.sv_options import SVOptions
from hybridpgm.gp.sv_posterior import SVPosterior
from hybridpgm.gp.sv_program import SVProgram
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import refuse_uninitialized
from hybridpgm.precision_scope import autocast_dtype
from hybridpgm.serialization import serializable

__all__ = ["SVDeepKernelGP"]


@serializable
class SVDeepKernelGP(SVOptions, SVProgram, SVPosterior, gpytorch.models.ApproximateGP):
    """Sparse variational GP on network features, a Pyro model/guide pair.

    :param feature_extractor: module mapping ``B x ...`` to ``B x F``; ``None`` is the identity.
    :param int num_features: ``F``, the feature dimension.
    :param int num_data: ``N``, the number of training examples: the likelihood of a batch of ``B`` rows is scaled
        by ``N / B`` and :meth:`objective` divides the bound by ``N``.  The attribute ``num_data`` may be set later
        (a larger training set): both scales follow it, and :func:`hybridpgm.save` records the current value.
    :param inducing_points: initial inducing points ``M x F`` (learned unless
        ``learn_inducing=False``); required unless ``grid_size`` is given.  Their dtype and device are the
        GP's: ``q(u)``, the mean, the kernel and the likelihood are put there (floating inputs are converted to
        it where exact).
    :param grid_size: use :class:`~gpytorch.variational.GridInterpolationVariationalStrategy`
        with this many grid points per feature (features scaled into ``grid_bounds`` by
        :class:`~hybridpgm.gp.grid_scaling.RunningScaleToGrid`: the running minimum and maximum of the features
        over the training batches, saved in the ``state_dict`` and used in eval mode, so predictions do not
        depend on which mini-batch came last; features outside it are clamped to it).
    :param grid_bounds: ``(lower, upper)``, the box of the grid of ``grid_size`` (default ``(-1, 1)``).
    :param kernel: GPyTorch kernel on features (default ``ScaleKernel(RBF)``).
    :param mean: GPyTorch mean (default constant).
    :param likelihood: e.g. :class:`~gpytorch.likelihoods.GaussianLikelihood`
        (default) or :class:`~gpytorch.likelihoods.BernoulliLikelihood`.  Targets are floating; ``bool``
        labels are taken as 0/1 (cast exactly to the model's dtype); integer labels only by a likelihood
        over classes (:class:`~gpytorch.likelihoods.SoftmaxLikelihood`).
    :param bool learn_inducing: learn the locations of ``inducing_points`` (default ``True``).
    :param str name_prefix: prefix of the Pyro sites (``<prefix>.u``, ``<prefix>.f``, ``<prefix>.y``).  The attribute
        may be set later (the likelihood's ``f`` and ``y`` sites follow it); :func:`hybridpgm.save` records the
        current ``num_data``, ``name_prefix`` and ``beta`` (:mod:`~hybridpgm.gp.sv_options`).
    :param float beta: weight of the KL term (1 is exact variational inference).  ``0`` drops it: the
        ``<prefix>.u`` sites of :meth:`model` and :meth:`guide` are masked (:func:`pyro.poutine.scale` refuses a scale
        of 0), so the bound is the expected log-likelihood alone.  The attribute ``beta`` may be changed between
        steps (a KL anneal from 0).
    :raises ModelSpecError: ``num_features``/``num_data`` not positive integers, an unusable ``grid_size`` or
        ``grid_bounds``, ``inducing_points`` that are not a finite floating ``M x F`` tensor with ``M >= 1``, a
        ``kernel``/``mean``/``likelihood`` that is not a GPyTorch one, a batch-shaped ``kernel``/``mean`` (a batch
        of GPs: this is a single-output GP) or one whose ``ard_num_dims``/``active_dims`` do not fit
        ``num_features`` (:mod:`~hybridpgm.gp.kernel_checks`), or a ``feature_extractor`` holding a lazy
        module's parameters that nothing has initialised (``nn.LazyLinear``: run it once on a batch first).
    :raises ConfigError: ``beta`` not a finite number ``>= 0``, ``name_prefix`` not a non-empty string.
    """

    def __init__(self, feature_extractor: torch.nn.Module | None = None, *, num_features: int, num_data: int,
                 inducing_points: torch.Tensor | None = None, grid_size: int | None = None,
                 grid_bounds: tuple[float, float] = (-1.0, 1.0), kernel: gpytorch.kernels.Kernel | None = None,
                 mean: gpytorch.means.Mean | None = None, likelihood: gpytorch.likelihoods.Likelihood | None = None,
                 learn_inducing: bool = True, name_prefix: str = "gp", beta: float = 1.0):
        num_features = positive_int(num_features, "SVDeepKernelGP num_features", error=ModelSpecError)
        num_data = positive_int(num_data, "SVDeepKernelGP num_data (training examples)", error=ModelSpecError)
        check_gp_parts(kernel, mean, num_features, "SVDeepKernelGP", told=True)  # types, batch shapes, ard vs F
        check_module(likelihood, gpytorch.likelihoods.Likelihood, "SVDeepKernelGP likelihood")
        if isinstance(feature_extractor, torch.nn.Module):  # no data here to run a lazy one on (DeepKernelGP does)
            refuse_uninitialized(feature_extractor, "SVDeepKernelGP feature_extractor")
        self.beta, self.name_prefix = beta, name_prefix  # checked by their setters (SVOptions)
        if grid_size is not None:
            if as_integer(grid_size) is None:
                raise ModelSpecError(f"grid_size (grid points per feature) must be an integer >= 4, got {grid_size!r}")
            grid_size = as_integer(grid_size)
            grid_bounds = check_grid_bounds(grid_bounds)
            if grid_size < 4 or grid_size ** num_features > 2**16:
                raise ModelSpecError(f"grid of {grid_size}^{num_features} inducing points is not usable; "
                                     "use <= 2 features or inducing_points")
            dist = gpytorch.variational.CholeskyVariationalDistribution(grid_size ** num_features)
            strategy = gpytorch.variational.GridInterpolationVariationalStrategy(
                self, grid_size, [tuple(grid_bounds)] * num_features, dist)
        else:
            check_inducing_points(inducing_points, num_features)  # None: names inducing_points= and grid_size=
            dist = gpytorch.variational.CholeskyVariationalDistribution(inducing_points.shape[0])
            strategy = gpytorch.variational.VariationalStrategy(self, inducing_points, dist,
                                                                learn_inducing_locations=learn_inducing)
        super().__init__(strategy)
        self.feature_extractor = feature_extractor if feature_extractor is not None else torch.nn.Identity()
        # the running range of the training batches' features, kept for eval (not the last batch's range)
        self.scale_to_bounds = RunningScaleToGrid(*grid_bounds) if grid_size is not None else torch.nn.Identity()
        self.mean_module = mean if mean is not None else gpytorch.means.ConstantMean()
        self.covar_module = kernel if kernel is not None else default_kernel(num_features, None, grid_bounds)
        self.likelihood = likelihood if likelihood is not None else gpytorch.likelihoods.GaussianLikelihood()
        self.likelihood.name_prefix = name_prefix  # the one copy, kept in step by the name_prefix setter
        self.num_features, self.num_data = num_features, num_data  # num_data: the likelihood's (the property)
        self.example_shape: tuple[int, ...] | None = None
        self._network_autocast: torch.dtype | None = None  # set by _gp_precision only
        if inducing_points is not None and grid_size is None:
            # the GP's parts (q(u), mean, kernel, likelihood) on the inducing points' device and in their dtype,
            # as DeepKernelGP puts its GP in its features' dtype: float64 inducing points give a float64 GP
            for part in (self.variational_strategy, self.mean_module, self.covar_module, self.likelihood):
                part.to(device=inducing_points.device, dtype=inducing_points.dtype)

    def forward(self, h: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """Prior over the latent function at features ``h``.

        :param h: features ``B x F``.
        """
        return gpytorch.distributions.MultivariateNormal(self.mean_module(h), self.covar_module(h))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """GP inputs ``... x B x F`` of inputs ``x`` (``... x B x example_shape``).

        Leading dimensions (Pyro's vectorized particles, when the input depends
        on a latent variable of a larger model) pass through: the feature
        extractor must map ``... x B x example_shape`` to ``... x B x F``.

        :param x: inputs ``... x B x example_shape``, on the model's device; floating and ``bool`` inputs are
            converted to the extractor's dtype (its parameters'; the inducing points' for one without) where that
            is exact (float32 into a float64 model, ``bool`` as 0/1: :func:`~hybridpgm.data.validation.as_model_dtype`,
            :func:`~hybridpgm.gp.feature_gp.extractor_input_dtype`); integers go to it as they are (an embedding's
            indices).
        :raises DataError: ``x`` of the wrong shape, NaN/inf values, a floating dtype finer than the model's
            (float64 inputs of a float32 model), inputs the feature extractor cannot take, or (identity extractor)
            integer inputs.
        :raises DeviceError: ``x`` is not on the model's device.
        :raises ModelSpecError: the extractor's output has the wrong shape or another dtype than the GP (features
            in autocast's dtype, the extractor having run under autocast, are cast to the GP's dtype instead).
        """
        inducing = self.variational_strategy.inducing_points
        floating = isinstance(x, torch.Tensor) and (x.is_floating_point() or x.dtype == torch.bool)  # ints as given
        x = check_inputs_deferred(x, None, dtype=extractor_input_dtype(self.feature_extractor, inducing.dtype)
                                  if floating else None, device=inducing.device, widen=True)  # exact; finite: fit's
        known = self.example_shape
        if known is not None and (x.dim() <= len(known) or tuple(x.shape[x.dim() - len(known):]) != known):
            dims = ", ".join(map(str, known))
            raise DataError(f"x has shape {tuple(x.shape)}, expected (N, {dims}) "
                            f"(or (..., N, {dims}) with leading particle dimensions)")
        kind, low = inducing.device.type, self._network_autocast  # the caller's autocast, inside _gp_precision
        with torch.autocast(kind, dtype=low) if low is not None else contextlib.nullcontext():
            h = extract_features(self.feature_extractor, x)
        if h.dtype != inducing.dtype and h.dtype == (low or autocast_dtype(kind)):
            h = h.to(inducing.dtype)  # the network ran under autocast (fit's precision): the GP takes its own dtype
        if h.dtype != inducing.dtype:
            if isinstance(self.feature_extractor, torch.nn.Identity):
                raise DataError(f"x has dtype {x.dtype}, the model computes in {inducing.dtype}; convert x "
                                f"(x.to({inducing.dtype}))" + (f" or the model (model.to({x.dtype}))"
                                                               if x.is_floating_point() else ""))
            raise ModelSpecError(f"feature extractor returns {h.dtype} features, the GP computes in "
                                 f"{inducing.dtype}; convert the whole model with model.to(dtype)")
        leading = h.dim() - 1
        if (h.dim() < 2 or h.shape[-1] != self.num_features or x.dim() <= leading
                or tuple(h.shape[:-1]) != tuple(x.shape[:leading])):
            raise ModelSpecError(f"feature extractor maps {tuple(x.shape)} to {tuple(h.shape)}; expected "
                                 f"(..., {x.shape[-2] if x.dim() >= 2 else 'B'}, {self.num_features}) with the "
                                 "input's leading dimensions kept")
        example_shape = tuple(x.shape[leading:])
        if self.example_shape is None:
            self.example_shape = example_shape
        elif example_shape != self.example_shape:
            raise DataError(f"x has shape {tuple(x.shape)}: examples of shape {example_shape}, expected "
                            f"{self.example_shape} (as in the first call)")
        return self.scale_to_bounds(h)

    def __call__(self, x: torch.Tensor, prior: bool = False, **kwargs: Any):
        """``q(f)`` (or ``p(f)`` when ``prior``) at inputs ``x``: an MVN over ``B`` values (the GP in its own dtype
        under autocast, see :meth:`_gp_precision`); ``B = 0`` gives an empty MVN (shape ``... x 0``)."""
        self._fresh()
        with self._gp_precision():
            h = self.features(x)
            if h.shape[-2] == 0 and isinstance(self.scale_to_bounds, RunningScaleToGrid):  # GPyTorch's grid fails
                return empty_mvn(h)
            return self.variational_strategy(h, prior=prior, **kwargs)

    @contextlib.contextmanager
    def _gp_precision(self) -> Iterator[None]:
        """Autocast off for the GP (on the inducing points' device type) where the caller has it on; the
        feature extractor still runs under the caller's autocast (:meth:`features` re-enables it) and its
        features are cast to the GP's dtype.  A no-op without autocast, or nested in itself."""
        kind = self.variational_strategy.inducing_points.device.type
        low = autocast_dtype(kind)
        if low is None or self._network_autocast is not None:
            yield
            return
        self._network_autocast = low
        try:
            with torch.autocast(kind, enabled=False):
                yield
        finally:
            self._network_autocast = None

    def _fresh(self) -> None:
        # GPyTorch memoizes q(u), p(u) and the Cholesky factor of K_uu on the strategy (a grid kernel its grid
        # covariance) and drops them only on a mode change or, in train mode, when the strategy is called (after
        # pyro_model/pyro_guide read p(u)/q(u)).  Dropped at every call, in either mode: answers from the current
        # parameters, never a previous call's (nor its already back-propagated graph).
        self.variational_strategy._clear_cache()
        clear_gpytorch_caches(self.covar_module, self.mean_module, self.likelihood)

    # ----------------------------------------------------------- prediction
    def predict(self, x: torch.Tensor) -> GPPrediction:
        """Predictive mean and variance of the targets at ``x`` (``B x ...``)
        under :math:`q`: for a Gaussian likelihood ``y`` itself, for a
        Bernoulli one the class-1 probability and its Bernoulli variance.  ``B = 0`` gives empty results.

        :param x: inputs ``B x ...`` (see :meth:`features`).
        :raises DataError: see :meth:`features`.
        :raises DeviceError: ``x`` is not on the model's device."""
        with keeping_modes(self), torch.no_grad(), self._gp_precision():  # each sub-module's own mode after
            self.eval()
            self._fresh()  # eval() drops GPyTorch's memo only when the model was training
            h = self.features(x)
            if h.shape[-2] == 0:  # no examples (GPyTorch's grid interpolation cannot take an empty batch)
                return GPPrediction(h.new_empty(h.shape[:-1]), h.new_empty(h.shape[:-1]))
            y = self.likelihood(self.variational_strategy(h, prior=False))
            return GPPrediction(y.mean, y.variance)
