"""Deep kernel learning: exact (KISS-)GP regression on the features of a network.

A deep kernel [1] composes a base kernel with a network :math:`g_w`:

.. math::

    k_{\\theta, w}(x, x') = k_\\theta\\bigl(g_w(x), g_w(x')\\bigr),

and the network weights :math:`w` and hyperparameters :math:`\\theta` are
learned together by maximising the exact log marginal likelihood

.. math::

    \\log p(y \\mid X) = -\\tfrac12 (y - m)^\\top (K + \\sigma^2 I)^{-1} (y - m)
        - \\tfrac12 \\log |K + \\sigma^2 I| - \\tfrac n2 \\log 2\\pi .

With ``grid_size`` the base kernel is interpolated from a regular grid in feature space (KISS-GP, [2]):
:math:`K \\approx W K_{UU} W^\\top` with sparse cubic interpolation weights :math:`W` and a Toeplitz/Kronecker
:math:`K_{UU}`, so matrix-vector products and hence conjugate-gradient inference cost about :math:`O(n + m \\log m)`.
The features are then scaled into the grid's bounds (:class:`gpytorch.utils.grid.ScaleToBounds`, as
:class:`~hybridpgm.gp.grid_scaling.ScaleToGrid`, which also takes a batch of one example or of equal features: it
goes to the grid's centre).  That scaling is part of the trained model: it is recorded from the training
features when the model is built and by every training step (train mode; a mini-batch step widens it to cover
its batch, so the range kept is not the last batch's), saved in the ``state_dict``, and kept
when the GP is conditioned on other data (:meth:`DeepKernelGP.set_train_data`, the refit of
:func:`~hybridpgm.gp.validation.fit_validated`), so the kernel does not change with the conditioning set; features
outside the recorded range are clamped to it.
All of it is GPyTorch; this class adds the feature extractor and input checks.  The training objective,
:class:`~hybridpgm.gp.exact_mll.ExactMLLObjective`, and the recipe :func:`~hybridpgm.gp.exact_mll.train_deep_kernel`
live in :mod:`hybridpgm.gp.exact_mll` (importable from here as well); the likelihoods exact inference accepts
are checked by :mod:`hybridpgm.gp.exact_likelihood`, and state saved with the former default KISS-GP kernel is
converted on load by :mod:`hybridpgm.gp.legacy_kiss_state`.

Above ``gpytorch.settings.max_cholesky_size`` (800 examples by default) GPyTorch computes the marginal
likelihood by conjugate gradients and a *stochastic* Lanczos estimate of :math:`\\log|K + \\sigma^2 I|`
(and, under ``fast_pred_var``, predictive variances from a random Lanczos start): the "exact" marginal
likelihood is then an estimate.  Outside :func:`hybridpgm.fit`, :meth:`DeepKernelGP.marginal_log_likelihood`
and :meth:`DeepKernelGP.predict` draw those probes from a generator seeded with 0
(:func:`~hybridpgm.rng_scope.fixed_rng`): the estimate is a fixed function of the model and the data,
and the caller's random streams do not move for them.  Only the probes are fixed: a feature extractor in train
mode draws its dropout masks from the caller's streams, a fresh mask each call.  Inside ``fit``, the training
loss draws the probes from ``fit``'s seeded stream (fresh probes every step).  For the exact value (Cholesky,
:math:`O(n^3)`) raise the threshold:
``with gpytorch.settings.max_cholesky_size(n): model.marginal_log_likelihood()``.

Under :func:`torch.autocast` (``fit(precision="bf16"|"fp16")``) only the feature extractor runs in the half
precision: its features are cast to the GP's dtype and the GP -- the grid scaling, the kernel, the marginal
likelihood and the posterior -- runs with autocast off (:class:`~hybridpgm.precision_scope.exact_precision`), as
:class:`~hybridpgm.gp.SVDeepKernelGP` does.  GPyTorch's sparse KISS-GP interpolation has no bfloat16 kernel, and
a Cholesky factor or conjugate gradients in half precision lose the marginal likelihood's digits.

References:

1. A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Deep Kernel Learning*, AISTATS 2016.
2. A. G. Wilson, H. Nickisch, *Kernel Interpolation for Scalable Structured
   Gaussian Processes (KISS-GP)*, ICML 2015.
"""

from __future__ import annotations

import gpytorch
import torch

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp.conditioning_data import ConditioningData
from hybridpgm.gp.deep_kernel_call import PosteriorCall
from hybridpgm.gp.deep_kernel_mll import MarginalLikelihood
from hybridpgm.gp.empty_batch import empty_mvn
from hybridpgm.gp.exact_likelihood import check_exact_likelihood
from hybridpgm.gp.exact_mll import ExactMLLObjective, train_deep_kernel  # re-exported: their former home
from hybridpgm.gp.extractor import extract_features
from hybridpgm.gp.feature_gp import (FeatureGP, GPPrediction, check_gp_dtype, check_grid_bounds, check_inputs,
                                     check_inputs_deferred, check_module, check_targets, default_kernel, grid_kernel)
from hybridpgm.gp.grid_scaling import ScaleToGrid
from hybridpgm.gp.kernel_checks import check_gp_parts
from hybridpgm.gp.legacy_kiss_state import convert_legacy_kiss_state
from hybridpgm.gp.prediction_cache import PredictionCache, clear_gpytorch_caches, release_test_caches, state_key
from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_network
from hybridpgm.options import PARAMETERS_BUILT, Option
from hybridpgm.precision_scope import exact_precision
from hybridpgm.rng_scope import fixed_rng, keeping_global_rngs
from hybridpgm.serialization import serializable
from hybridpgm.summary_repr import module_text

__all__ = ["DeepKernelGP", "ExactMLLObjective", "train_deep_kernel"]


@serializable
class DeepKernelGP(ConditioningData, MarginalLikelihood, PosteriorCall, gpytorch.Module):
    """Exact GP regression on network features, optionally with KISS-GP.

    :param train_x: training inputs ``N x ...`` (any example shape the
        feature extractor accepts, e.g. ``N x D`` or windows ``N x T x D``).
    :param train_y: training targets ``N``; must be finite.
    :param feature_extractor: an ``nn.Module`` mapping ``B x ...`` to one tensor ``B x F``; ``None`` is the identity
        (then inputs must be ``N x F``).  A function, or a network returning a tuple, is refused by name.
    :param kernel: a GPyTorch kernel on features (default
        ``ScaleKernel(RBFKernel(ard_num_dims=F))``).  With ``grid_size``, the kernel, given or default, is the
        base kernel of a ``GridInterpolationKernel`` (KISS-GP) on a fixed grid over ``grid_bounds`` (a given one
        must then be stationary); a kernel that already holds a fixed grid of ``grid_size`` points per feature
        over ``grid_bounds`` is used as given (see :func:`~hybridpgm.gp.feature_gp.grid_kernel`).
    :param mean: a GPyTorch mean (default :class:`~gpytorch.means.ConstantMean`).
    :param likelihood: a Gaussian likelihood with one noise variance for every example, as exact inference
        here needs: default :class:`~gpytorch.likelihoods.GaussianLikelihood`; its subclasses (homoskedastic
        noise) are accepted.  A likelihood with per-example noise
        (:class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood`, its subclass
        :class:`~gpytorch.likelihoods.DirichletClassificationLikelihood`, heteroskedastic noise) is refused:
        GPyTorch adds its ``N`` training noises to any batch of ``N`` points (test points or a mini-batch)
        and no noise to batches of other sizes, so predictions, mini-batch losses and conditioning on other
        data (:meth:`set_train_data`) would be silently wrong.  For a non-Gaussian one (classification,
        counts) use :class:`hybridpgm.gp.SVDeepKernelGP`.
    :param grid_size: KISS-GP grid points per feature dimension (the features are then scaled into
        ``grid_bounds`` by :class:`~hybridpgm.gp.grid_scaling.ScaleToGrid`); ``None`` for an exact kernel.
        The default KISS-GP kernel is GPyTorch's DKL layout,
        ``GridInterpolationKernel(ScaleKernel(RBF))``, whose prior variance is
        the outputscale to the power ``F`` (see
        :func:`~hybridpgm.gp.feature_gp.default_kernel`); state saved with the
        former default, ``ScaleKernel(GridInterpolationKernel(RBF))``, still loads (converted to the same covariance).
    :param grid_bounds: the box features are scaled into when ``grid_size`` is set.
    :raises DataError: ``train_x`` is not ``N x ...`` with ``N >= 1`` and finite, or is float16/bfloat16 (the GP
        computes in float32 or float64: train with ``fit(precision=...)`` for a 16-bit network), ``train_y`` is not
        a finite floating vector of length ``N`` with ``train_x``'s dtype (when that is floating) and device, or the
        identity feature extractor is given inputs with no features or non-floating (integer, ``bool``) inputs
        (give an extractor such as an ``nn.Embedding``, or convert them with ``.float()``).
    :raises ModelSpecError: the feature extractor does not map ``B x ...`` to floating ``B x F`` with ``F >= 1`` (not
        float16/bfloat16), a ``kernel``/``mean``/``likelihood`` that is not a GPyTorch one, a non-Gaussian
        ``likelihood`` (the message names its class and points to :class:`~hybridpgm.gp.SVDeepKernelGP`) or one with
        per-example noise (the message names its class), a batch-shaped ``kernel``/``mean``, ``ard_num_dims`` or
        ``active_dims`` unfit for ``F`` (:mod:`~hybridpgm.gp.kernel_checks`), an unusable ``grid_size``/``grid_bounds``,
        or, with ``grid_size``, a ``kernel`` that is not stationary or holds a grid of another size or bounds.

    Building the model runs the feature extractor once on the training inputs (to learn ``F`` and, with
    ``grid_size``, the grid scaling) in eval mode, without gradients and outside the caller's random
    streams: a batch norm's running statistics, the extractor's modes and the global RNGs are unchanged.
    """

    num_features = Option(fixed=PARAMETERS_BUILT, doc="""``F``, the width of the feature extractor's output, found when
        the model is built (fixed: it decides the kernel's dimensions and, under KISS-GP, its grid).""")
    grid_size = Option(fixed=PARAMETERS_BUILT, doc="""KISS-GP grid points per feature, ``None`` for an exact kernel
        (fixed: it decides the kernel's grid and the grid scaling built with the model).""")

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, feature_extractor: torch.nn.Module | None = None,
                 *, kernel: gpytorch.kernels.Kernel | None = None, mean: gpytorch.means.Mean | None = None,
                 likelihood: gpytorch.likelihoods.Likelihood | None = None, grid_size: int | None = None,
                 grid_bounds: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        check_inputs(train_x, None, "train_x")
        if train_x.shape[0] == 0:
            raise DataError(f"train_x has shape {tuple(train_x.shape)}: no training examples "
                            "(the GP needs at least one)")
        check_gp_dtype(train_x.dtype, "train_x", DataError)
        y_dtype = train_x.dtype if train_x.is_floating_point() else None  # floating inputs' (else any floating)
        check_targets(train_y, train_x.shape[0], "train_y", dtype=y_dtype, device=train_x.device)
        check_module(likelihood, gpytorch.likelihoods.Likelihood, "DeepKernelGP likelihood")
        check_exact_likelihood(likelihood)
        if grid_size is not None:
            grid_bounds = check_grid_bounds(grid_bounds)
        if feature_extractor is None and not train_x.is_floating_point():
            raise DataError(f"train_x has dtype {train_x.dtype}: the identity feature extractor gives the GP "
                            "non-floating features; give a feature extractor that takes them (e.g. an "
                            "nn.Embedding for categories) or convert the inputs with .float()")
        self.example_shape = tuple(train_x.shape[1:])
        self.feature_extractor = (torch.nn.Identity() if feature_extractor is None  # a function refused by name
                                  else check_network(feature_extractor, "DeepKernelGP feature_extractor"))
        # the probe (F, and with a grid the scaling of the training features) in eval mode, outside the
        # caller's random streams: a batch norm's running statistics and torch's global RNGs stay as they were
        with keeping_modes(self.feature_extractor), keeping_global_rngs(0, numpy_python=False), \
                torch.no_grad():
            self.feature_extractor.eval()
            probe = self._extract(train_x if grid_size is not None else train_x[:2], shape=tuple(train_x.shape))
        if not probe.is_floating_point():
            raise ModelSpecError(f"feature extractor maps {tuple(train_x[:2].shape)} inputs to features of dtype "
                                 f"{probe.dtype}; the GP needs floating features")
        check_gp_dtype(probe.dtype, "the feature extractor's output", ModelSpecError)
        num_features = probe.shape[-1]
        if num_features == 0:
            if isinstance(self.feature_extractor, torch.nn.Identity):
                raise DataError(f"train_x has shape {tuple(train_x.shape)}: examples without features "
                                "(the identity feature extractor needs N x F inputs with F >= 1)")
            raise ModelSpecError(f"feature extractor maps {tuple(train_x[:2].shape)} to {tuple(probe.shape)}: "
                                 "no features (expected (B, F) with F >= 1)")
        check_gp_parts(kernel, mean, num_features, type(self).__name__)  # types, batch shapes, ard_num_dims vs F
        self.num_features, self.grid_size = num_features, grid_size
        self._default_kiss = kernel is None and grid_size is not None
        if kernel is None or grid_size is not None:  # the default kernel, or KISS-GP with the given base kernel
            kernel = default_kernel(num_features, grid_size, grid_bounds) if kernel is None else \
                grid_kernel(kernel, num_features, grid_size, grid_bounds)
        self.scale_to_bounds = ScaleToGrid(*grid_bounds) if grid_size is not None else torch.nn.Identity()
        likelihood = likelihood if likelihood is not None else gpytorch.likelihoods.GaussianLikelihood()
        mean = mean if mean is not None else gpytorch.means.ConstantMean()
        self.gp = FeatureGP(likelihood, mean, kernel)
        self.likelihood = likelihood
        self.mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, self.gp)
        self.register_buffer("train_x", train_x, persistent=False)
        self.register_buffer("train_y", train_y, persistent=False)
        self._train_data_lost = False  # True once the data went to the meta device, until set_train_data
        self._prediction_cache = None  # GPyTorch's prediction strategy, kept by posterior/predict
        # the GP's kernel, mean and likelihood (built here on the CPU, in float32, by default) on the training
        # data's device and in the features' dtype: a model built from CUDA tensors is on CUDA throughout, and
        # one whose features are float64 keeps float64 hyperparameters
        self.gp.to(device=train_x.device, dtype=probe.dtype)
        self.scale_to_bounds.to(device=train_x.device, dtype=probe.dtype)
        if grid_size is not None:  # the grid scaling of the features as built (training steps re-record it)
            with torch.no_grad():
                self.scale_to_bounds(probe)

    def _extract(self, x: torch.Tensor, shape: tuple | None = None) -> torch.Tensor:
        h = extract_features(self.feature_extractor, x, shape)
        if h.dim() != 2 or h.shape[0] != x.shape[0]:
            raise ModelSpecError(f"feature extractor maps {tuple(x.shape)} to {tuple(h.shape)}; "
                                 f"expected ({x.shape[0]}, F)")
        return h

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw network features :math:`g_w(x)`, ``B x F``.

        :param x: inputs ``B x ...`` of the training inputs' example shape and device (``B = 0``: ``0 x F``), of
            their dtype or one converted to a floating one exactly (``bool``, integers in range, float32 for a
            float64 model: :func:`~hybridpgm.data.validation.as_model_dtype`).
        :raises DataError: a wrong shape or a dtype not converted exactly (float64 for a float32 model), or NaN/inf
            values (inside :func:`hybridpgm.fit`'s step the finiteness check joins the step's one host read).
        :raises DeviceError: ``x`` is not on the model's device.
        """
        x = check_inputs_deferred(x, self.example_shape, dtype=self.train_x.dtype, device=self.train_x.device,
                                  widen=True)
        return self._extract(x)

    def training_features(self) -> torch.Tensor:
        """:meth:`features` of the training inputs, unchecked: they were checked when set
        (construction or :meth:`set_train_data`).  ``N x F``.

        :raises DataError: the training data went to the meta device (see :meth:`training_data`)."""
        return self._extract(self.training_data()[0])

    def _gp_precision(self, h: torch.Tensor) -> exact_precision:
        """The GP's scope for features ``h``: where autocast is on, autocast off and ``h`` in the GP's dtype
        (at least float32; a float64 GP stays float64); nothing otherwise.
        ``with self._gp_precision(h) as (h, _): ...``."""
        return exact_precision(h, self.likelihood.noise_covar.raw_noise)

    def gp_inputs(self, h: torch.Tensor) -> torch.Tensor:
        """Features as the GP sees them (scaled into the grid under KISS-GP).  In train mode (a training
        step) the grid scaling records a range: ``h``'s own where ``h`` has at least as many rows as the training
        data (a full-batch step), else (a mini-batch step) the union of the recorded range and ``h``'s, so the
        range kept for prediction covers every batch, not the last one (which may be one example); in eval mode
        it uses the recorded one.

        :param h: features ``B x F`` (from :meth:`features`).
        """
        if isinstance(self.scale_to_bounds, ScaleToGrid) and h.shape[-2] < self.train_x.shape[0]:
            return self.scale_to_bounds(h, widen=True)
        return self.scale_to_bounds(h)

    def prior(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """Prior of the latent function at ``x`` (``B x ...``): an MVN over ``B`` values (under KISS-GP with
        the recorded grid scaling, which ``x`` does not change).

        :param x: inputs ``B x ...`` (see :meth:`features`).
        """
        h = self.features(x)
        clear_gpytorch_caches(self.gp)  # an eval-mode grid matrix of earlier hyperparameters: built anew
        with keeping_modes(self.scale_to_bounds), self._gp_precision(h) as (h, _):
            self.scale_to_bounds.eval()
            return self.gp.forward(self.gp_inputs(h))

    def __repr__(self) -> str:
        """The module tree, each module once (:func:`~hybridpgm.summary_repr.module_text`): the likelihood, a child of
        the model, of its GP and of its marginal likelihood, and the GP, a child of the marginal likelihood too, are
        written in full at their first place only."""
        return module_text(self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if getattr(self, "_default_kiss", False):
            convert_legacy_kiss_state(state_dict, prefix, self.gp.covar_module.base_kernel, self.num_features)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def condition(self) -> None:
        """Put the model in eval mode and condition the GP on the features of the training data; afterwards
        ``model.gp(model.gp_inputs(h))`` gives the posterior at features ``h`` cheaply (GPyTorch caches the prediction
        strategy), as :meth:`GPLSTM.forecast` does step after step.  The training features are computed without
        gradients; under KISS-GP they are scaled into the grid as recorded in training (nothing is re-recorded here).
        The strategy :meth:`predict` keeps is dropped."""
        self._prediction_cache = None
        self._condition(grad=False)

    def _condition(self, grad: bool) -> None:
        self.eval()
        clear_gpytorch_caches(self.gp)  # GPyTorch's eval-mode caches (a grid kernel's matrix) built anew too
        with torch.set_grad_enabled(grad), self._gp_precision(self.training_features()) as (h_train, _):
            h_train = self.gp_inputs(h_train)
        self.gp.set_train_data(h_train, self.training_data()[1], strict=False)

    def _clear_cache(self) -> None:  # GPyTorch's hook of train() and load_state_dict
        self._prediction_cache = None

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_prediction_cache"] = None  # a copy conditions anew (the cache's weak references are not its own)
        return state

    def posterior(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        """Posterior of the latent function at test inputs ``x`` (``B x ...``)
        given the training data (recomputes the features of ``x``).

        Without gradients (as :meth:`predict`) GPyTorch's prediction strategy (the training solve; under
        ``fast_pred_var`` the LOVE cache) is kept and used again while nothing it depends on changed
        (:mod:`hybridpgm.gp.prediction_cache`: data, parameters, buffers, modes, settings), giving the answer of
        conditioning anew (bit for bit on a deterministic device) without the ``O(n)`` solves; random probes
        (``fast_pred_var`` above ``max_cholesky_size``) are drawn when it is built, from the caller's streams.

        With gradients enabled it conditions anew and is differentiable exactly: the training features carry their
        graph and GPyTorch's test caches are not detached (``gpytorch.settings.detach_test_caches(False)``), so its
        mean and covariance give the gradients of the closed form in the network weights and the hyperparameters.
        The graph lives in the returned distribution only and goes with it, back-propagated or not: on return the
        model is as :meth:`condition` leaves it (detached training features, no prediction strategy, no grid
        matrix), so a following ``model.gp(...)`` conditions anew and back-propagates through its own graph.

        :param x: test inputs ``B x ...`` (see :meth:`features`); ``B = 0`` gives an empty MVN (event shape ``[0]``,
            the GP's dtype and device).
        :raises DataError: see :meth:`features`.
        :raises DeviceError: ``x`` is not on the model's device."""
        return self._posterior(x, fixed_probes=False)

    def _posterior(self, x: torch.Tensor, fixed_probes: bool) -> gpytorch.distributions.MultivariateNormal:
        """:meth:`posterior`; ``fixed_probes`` (part of a kept strategy's key): the probes of :meth:`predict`."""
        grad = torch.is_grad_enabled()
        with holding_global_state():
            if isinstance(self.scale_to_bounds, ScaleToGrid) and isinstance(x, torch.Tensor) and x.dim() >= 1 \
                    and x.shape[0] == 0:  # GPyTorch's grid interpolation cannot take an empty batch
                with keeping_modes(self):
                    self.eval()
                    with self._gp_precision(self.features(x)) as (h, _):  # the checks of any x
                        return empty_mvn(h)
            cache, self._prediction_cache = getattr(self, "_prediction_cache", None), None  # eval() drops it
            key = None if grad else state_key(self, ("fixed" if fixed_probes else "caller", self.train_x.device))
            kept = cache if grad else None  # a call with gradients neither uses nor replaces the kept strategy
            hit = key is not None and cache is not None and cache.key.matches(key)
            try:
                with keeping_modes(self), gpytorch.settings.detach_test_caches(not grad):
                    try:
                        if hit:
                            self.eval()
                            cache.install(self.gp)
                        else:
                            self._condition(grad=grad)  # each sub-module's own mode after (a frozen one too)
                        with self._gp_precision(self.features(x)) as (h, _):
                            result = self.gp(self.gp_inputs(h))
                        built = None if key is None else cache if hit else PredictionCache.of(self.gp, key)
                    finally:
                        if grad:  # the model as condition() leaves it, the graph in the result only
                            release_test_caches(self.gp)  # first: the strategy's memo is hooked on its own graph
                            clear_gpytorch_caches(self.gp)  # the strategy, a grid kernel's eval-mode matrix
                            if self.gp.train_inputs is not None:  # inputs alone: a meta-device refusal stays
                                self.gp.set_train_data(self.gp.train_inputs[0].detach(), strict=False)
                if built is not None:  # kept (under a copy of the values) unless the call itself moved a tensor
                    end = state_key(self, key.meta[-1], values=not hit)
                    kept = None if not key.same_tensors(end) else built if hit else built.under(end)
            finally:
                self._prediction_cache = kept
            return result

    def predict(self, x: torch.Tensor) -> GPPrediction:
        """Predictive mean and variance of the *targets* at ``x`` (``B x ...``), without gradients.  Wrap the call in
        :mod:`gpytorch.settings` contexts to change how it is computed (e.g. ``gpytorch.settings.fast_pred_var()``).
        ``B = 0`` gives empty results.  Random numbers GPyTorch's estimates need (Lanczos under ``fast_pred_var`` above
        ``max_cholesky_size``) come from a generator seeded with 0, not the caller's streams.  The prediction strategy
        is kept between calls (see :meth:`posterior`): predicting in chunks costs the training solves once, not once a
        chunk, and gives the answers of conditioning anew on each call.

        :param x: test inputs ``B x ...`` (see :meth:`features`).
        :returns: the :class:`~hybridpgm.gp.GPPrediction` of the ``B`` targets.
        :raises DataError: see :meth:`features`.
        :raises DeviceError: ``x`` is not on the model's device."""
        with holding_global_state(), torch.no_grad(), fixed_rng(self.train_x.device):  # one thread at a time
            if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == 0:
                # nothing to predict (and GPyTorch's grid interpolation cannot take an empty batch)
                empty = self.features(x).new_empty(0)  # the checks of any x: shape, dtype, device
                return GPPrediction(empty, empty.clone())
            y = self.likelihood(self._posterior(x, fixed_probes=True))
            return GPPrediction(y.mean, y.variance)
