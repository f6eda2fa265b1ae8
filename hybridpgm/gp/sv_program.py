"""The Pyro program of a :class:`~hybridpgm.gp.SVDeepKernelGP` (a mixin of the model: :class:`SVProgram`): its
:meth:`~SVProgram.model` / :meth:`~SVProgram.guide` pair and the ``fit`` objective built on it.

The pair is GPyTorch's Pyro integration (``pyro_model`` / ``pyro_guide`` and the likelihood's ``pyro_model``, as in
:class:`gpytorch.models.PyroGP`) under a data plate scaled by :math:`N / B`, so that an ELBO of the pair estimates
without bias, from a mini-batch of :math:`B` of the :math:`N` training examples,

.. math::

    \\mathcal L = \\sum_{i=1}^N \\mathbb E_{q(f_i)} \\log p(y_i \\mid f_i)
        - \\beta\\, \\mathrm{KL}\\bigl(q(u) \\,\\|\\, p(u)\\bigr)

(:math:`\\beta` the model's ``beta``, 1 for exact variational inference); :meth:`~SVProgram.objective` divides it by
:math:`N`.  The targets are checked here (shape, dtype, at most ``num_data`` rows), the inputs by the model's
:meth:`~hybridpgm.gp.SVDeepKernelGP.features`.

References: J. Hensman, A. Matthews, Z. Ghahramani, *Scalable Variational Gaussian Process Classification*,
AISTATS 2015; A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Stochastic Variational Deep Kernel Learning*,
NeurIPS 2016.
"""

from __future__ import annotations

from typing import Any

import gpytorch
import pyro
import torch
from pyro.infer import ELBO, TraceMeanField_ELBO

from hybridpgm.checks import sample_count
from hybridpgm.data.validation import check_num_data
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.gp.sv_objective import SVDKLObjective
from hybridpgm.infer import SVIObjective
from hybridpgm.module_registration import register_module
from hybridpgm.plate_dims import refuse_caller_plate
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["SVProgram"]


class SVProgram:
    """Mixin of :class:`~hybridpgm.gp.SVDeepKernelGP`: :meth:`model`, :meth:`guide` and :meth:`objective`."""

    def model(self, x: torch.Tensor, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Pyro model: :math:`u \\sim p(u)`, ``f`` (masked, see below), ``y ~ likelihood(f)``
        under a data plate scaled by :math:`N / B`.

        **An ELBO pair with** :meth:`guide`, **not a joint density** for MCMC or importance sampling.  As in
        GPyTorch's ``pyro_model``, ``f`` is drawn from the prior marginals :math:`\\mathcal N(m_i, K_{ii})` with its
        log-density masked out, and ``u`` does not enter ``f``: the trace's density is
        :math:`p(u) \\prod_i p(y_i \\mid f_i)`, right only inside an ELBO with :meth:`guide` (``objective()``,
        :class:`~pyro.infer.SVI`) and for ``Predictive(gp.model, guide=gp.guide)``.  ``MCMC(NUTS(gp.model))``
        samples the likelihood alone, no GP prior (for a Gaussian likelihood on all the data,
        :math:`f_i \\sim \\mathcal N(y_i, \\sigma^2)`), and
        ``Importance(gp.model, ...)`` weights are not those of :math:`p(f, u \\mid y)`.  For the exact posterior of
        ``f`` under a Gaussian likelihood use :class:`~hybridpgm.gp.DeepKernelGP` (closed form); for MCMC over a
        GP write ``f`` as one site of the joint prior, ``pyro.sample("f", MultivariateNormal(m, K))`` with ``m``,
        ``K`` from ``mean_module``/``covar_module`` of :meth:`features`, then ``pyro.sample("y", ..., obs=y)``.

        :param x: inputs ``B x ...`` (see :meth:`features`).
        :param y: targets ``B`` (``None`` samples them) in the model's dtype (that of the inducing points); ``bool``
            labels are cast to it.
        :raises DataError: ``x`` holds no examples (``B = 0``), or, with ``y`` given, more than :attr:`num_data`
            (the likelihood would be scaled by ``N / B < 1``); or ``y`` is not a tensor with ``B`` entries along
            its last dimension, or has a dtype the likelihood cannot take (integer or complex targets, except
            integer class labels for a ``SoftmaxLikelihood``), or a floating dtype other than the model's (see
            also :meth:`features`)."""
        self._check_nonempty(x)
        refuse_caller_plate("SVDeepKernelGP.model", self.name_prefix + ".data_plate")  # GPyTorch's plate, dim -1
        self._fresh()
        register_module(self.name_prefix, self)  # pyro.module's registration: Pyro's SVI finds the parameters
        with self._gp_precision(), self._kl_weight() as beta:
            function_dist = self.pyro_model(x, beta=beta, name_prefix=self.name_prefix)
            y = self._check_targets(x, y, function_dist)
            return self.likelihood.pyro_model(function_dist, y, *args, **kwargs)

    def guide(self, x: torch.Tensor, y: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Pyro guide: :math:`u \\sim q(u)` and :math:`f \\sim q(f)`.

        Half of an ELBO pair with :meth:`model` (neither is a joint density on its own: see :meth:`model`): ``f``
        is drawn from the marginals of :math:`q(f)`, its log-density masked out, as in GPyTorch's ``pyro_guide``.

        :param x: inputs ``B x ...`` (see :meth:`features`).
        :param y: targets ``B``, as :meth:`model` takes them.
        :param args: passed on, with ``kwargs``, to the likelihood's ``pyro_guide``.
        :raises DataError: as :meth:`model`."""
        self._check_nonempty(x)
        refuse_caller_plate("SVDeepKernelGP.guide", self.name_prefix + ".data_plate")
        self._fresh()
        register_module(self.name_prefix, self)
        with self._gp_precision(), self._kl_weight() as beta:
            function_dist = self.pyro_guide(x, beta=beta, name_prefix=self.name_prefix)
            y = self._check_targets(x, y, function_dist)
            self.likelihood.pyro_guide(function_dist, y, *args, **kwargs)

    def _check_nonempty(self, x: Any) -> None:
        # GPyTorch fails on an empty batch with a raw IndexError (grid interpolation) or ZeroDivisionError (the
        # likelihood's N / B scale).  Only an x with no elements can have B = 0: then its features (cheap, and the
        # checks of its shape, dtype and device) say whether the example dimension is the empty one.
        if isinstance(x, torch.Tensor) and x.numel() == 0 and self.features(x).shape[-2] == 0:
            raise DataError(f"x has shape {tuple(x.shape)}: an empty batch (no examples); the SVDeepKernelGP ELBO "
                            "(model/guide, objective().loss) needs at least one example per batch")

    def _check_targets(self, x: torch.Tensor, y: Any, function_dist: Any) -> Any:
        # shapes and dtype only (free): NaN/inf targets are refused by Pyro's validation of the likelihood site
        n = function_dist.shape()[-1]
        if y is not None:  # a training batch is part of the N rows: a scale N / B < 1 would over-weight the KL
            check_num_data(self.num_data, n, model="SVDeepKernelGP")
        if y is not None and (require_tensor(y, "y").dim() == 0 or y.shape[-1] != n):
            raise DataError(f"y has shape {tuple(y.shape)}, expected ({n},): one target per example of x "
                            f"(shape {tuple(x.shape)})")
        dtype = self.variational_strategy.inducing_points.dtype
        if y is None or y.dtype == dtype:
            return y
        if y.is_floating_point():
            raise DataError(f"y has dtype {y.dtype}, the model computes in {dtype}; convert y with .to({dtype}) (or "
                            f"the model with model.to({y.dtype})) rather than have the bound computed in another "
                            "dtype silently")
        if y.dtype == torch.bool:
            return y.to(dtype)  # labels 0/1, exact in any floating dtype
        if not y.is_complex() and isinstance(self.likelihood, gpytorch.likelihoods.SoftmaxLikelihood):
            return y  # class labels
        raise DataError(f"y has dtype {y.dtype}, but the {type(self.likelihood).__name__} takes floating targets "
                        f"(or bool labels); convert them with .to({dtype})")

    def objective(self, elbo: ELBO | None = None, num_particles: int = 8) -> SVIObjective:
        """The negative ELBO per training example, :math:`-\\mathcal L / N`, as a
        :func:`hybridpgm.fit` objective (one player ``"elbo"``; batches are
        ``(x, y)``).  Default: :class:`~pyro.infer.TraceMeanField_ELBO` (the KL
        term of :math:`u` is analytic) with ``num_particles`` vectorized samples
        of :math:`f` for the expected log-likelihood.

        :param elbo: the Pyro ELBO to use, or ``None`` (the default) for the one above.
        :param num_particles: the samples of :math:`f` of the default ELBO (default 8; unused with ``elbo``).
        :raises ConfigError: ``num_particles`` is not a positive integer (used when ``elbo`` is ``None``).
            The objective's ``loss`` raises :class:`~hybridpgm.errors.DataError` as :meth:`model` does (an empty
            batch, bad inputs or targets)."""
        if elbo is None:
            num_particles = sample_count(num_particles, "SVDeepKernelGP.objective num_particles")
            if num_particles == 0:
                raise ConfigError("SVDeepKernelGP.objective num_particles must be positive, got 0")
            elbo = TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                       max_plate_nesting=1)

        def model(x, y):  # 1 / N read at each call: it follows num_data set after the objective was made
            with pyro.poutine.scale(scale=1.0 / self.num_data):
                return self.model(x, y)

        def guide(x, y):
            with pyro.poutine.scale(scale=1.0 / self.num_data):
                return self.guide(x, y)

        return SVDKLObjective(model, guide, elbo, module=self, per_example=False)
