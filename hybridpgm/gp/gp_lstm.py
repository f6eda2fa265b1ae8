"""GP-LSTM: a recurrent deep kernel with semi-stochastic training.

The features of a window :math:`x = (x_{t-T+1}, \\dots, x_t)` are the last
hidden state of an LSTM followed by a linear map, :math:`g_w(x) \\in
\\mathbb R^F`, and the targets get a GP prior with the deep kernel
:math:`k_\\theta(g_w(x), g_w(x'))` [1] (a :class:`~hybridpgm.gp.DeepKernelGP`
whose feature extractor is recurrent).

Semi-stochastic training
------------------------
The exact negative log marginal likelihood :math:`\\ell(\\theta, H)` of [1]
couples all examples through :math:`K`, so its gradient in the network
weights is, by the chain rule through the features :math:`h_i = g_w(x_i)`,

.. math::

    \\nabla_w \\ell = \\sum_{i=1}^N G_i^\\top \\frac{\\partial h_i}{\\partial w},
    \\qquad G = \\frac{\\partial \\ell}{\\partial H}\\Big|_{H = g_w(X)} \\in \\mathbb R^{N \\times F}.

Following Al-Shedivat et al. [1], each step (i) updates the GP hyperparameters
:math:`\\theta` on the *full* data (player ``"gp"``), then (ii) computes
:math:`G` on the full data at the new :math:`\\theta` (one GP solve, no
back-propagation through the LSTM) and updates :math:`w` on a *mini-batch*
:math:`B` with the unbiased estimate
:math:`\\tfrac{N}{|B|} \\sum_{i \\in B} G_i^\\top \\partial h_i / \\partial w`
(player ``"network"``): back-propagation through time only touches the batch.

References:

1. M. Al-Shedivat, A. G. Wilson, Y. Saatchi, Z. Hu, E. P. Xing, *Learning
   Scalable Deep Kernels with Recurrent Structure*, JMLR 18, 2017.
2. S. Hochreiter, J. Schmidhuber, *Long Short-Term Memory*, Neural Computation, 1997.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridpgm.checks import check_player, generator_or_none, positive_int, sample_count, unit_fraction
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.gp.deep_kernel import DeepKernelGP
from hybridpgm.gp.feature_gp import check_inputs
from hybridpgm.gp.kept_features import KeptFeatures, KeptGradient, deterministic
from hybridpgm.gp.gp_lstm_forecast import Forecast, require_spread, sampled_paths
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.options import Option
from hybridpgm.serialization import serializable
from hybridpgm.tensor_arguments import require_tensor
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["Forecast", "GPLSTM", "LSTMFeatures", "SemiStochasticObjective"]


@serializable
class LSTMFeatures(nn.Module):
    """LSTM over a window, last hidden state, then a linear map to ``F`` features.

    :param int input_size: ``D``, values per time step.
    :param int hidden_size: LSTM width.
    :param int num_features: ``F``.
    :param int num_layers: stacked LSTM layers.

    Maps ``B x T x D`` to ``B x F``.

    :raises ModelSpecError: a size that is not a positive integer.
    """

    def __init__(self, input_size: int = 1, hidden_size: int = 32, num_features: int = 2, num_layers: int = 1):
        input_size = positive_int(input_size, "LSTMFeatures input_size", error=ModelSpecError)
        hidden_size = positive_int(hidden_size, "LSTMFeatures hidden_size", error=ModelSpecError)
        num_features = positive_int(num_features, "LSTMFeatures num_features", error=ModelSpecError)
        num_layers = positive_int(num_layers, "LSTMFeatures num_layers", error=ModelSpecError)
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features of windows ``x``.

        :param x: windows ``B x T x D``, ``D`` the network's ``input_size``, in the network's dtype.
        :returns: features ``B x F``.
        :raises DataError: ``x`` is not ``B x T x input_size``, or has another dtype than the network.
        """
        if x.dim() != 3 or x.shape[-1] != self.lstm.input_size:
            raise DataError(f"LSTM windows have shape {tuple(x.shape)}, expected (B, T, {self.lstm.input_size})")
        if x.dtype != self.head.weight.dtype:
            raise DataError(f"LSTM windows have dtype {x.dtype}, the network computes in {self.head.weight.dtype}; "
                            f"convert the windows or the network (.to(dtype))")
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@serializable
class GPLSTM(DeepKernelGP):
    """A :class:`~hybridpgm.gp.DeepKernelGP` with an :class:`LSTMFeatures` extractor.

    :param train_x: windows ``N x T x D``.
    :param train_y: targets ``N`` (e.g. the value after each window).
    :param int hidden_size: LSTM width.
    :param int num_features: ``F``, the GP's input dimension.
    :param int num_layers: stacked LSTM layers (default 1).
    :param int horizon: ``h``, how far after its window each target lies: ``y_i = v_{i+T-1+h}``, as
        :func:`hybridpgm.data.make_windows` ``(values, window, horizon)`` builds them (default 1, the next
        value).  It is saved with the model, and may be changed later as an attribute (checked, and saved with
        its new value); :meth:`forecast` needs ``h = 1``.
    :param kwargs: passed on to :class:`~hybridpgm.gp.DeepKernelGP` (``kernel``,
        ``likelihood``, ``grid_size``, ...).
    :raises DataError: ``train_x`` is not floating windows ``N x T x D`` with ``D >= 1`` (and see
        :class:`~hybridpgm.gp.DeepKernelGP`).
    :raises ModelSpecError: ``hidden_size``, ``num_features``, ``num_layers`` or ``horizon`` is not a
        positive integer, or a ``feature_extractor`` is passed (GPLSTM builds its own; use
        :class:`~hybridpgm.gp.DeepKernelGP` for a network of yours).
    """

    horizon = Option(
        lambda model, value: positive_int(value, "GPLSTM horizon", error=ModelSpecError),
        """``h``, how far after its window each training target lies (see the constructor), read by :meth:`forecast`;
        fixed when the model is built, as its training targets are (another value would feed ``h``-step-ahead
        predictions back as next values without an error).

        :raises FixedOptionError: (on assignment) another value.""",
        fixed="when the model is built (its training targets lie that far ahead)")

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, *, hidden_size: int = 32,
                 num_features: int = 2, num_layers: int = 1, horizon: int = 1, **kwargs: Any):
        if "feature_extractor" in kwargs:  # DeepKernelGP's own argument: torch's "multiple values" TypeError before
            raise ModelSpecError(f"GPLSTM builds its own feature extractor (an LSTMFeatures of hidden_size, "
                                 f"num_features and num_layers), got feature_extractor="
                                 f"{type(kwargs['feature_extractor']).__name__}; for a network of your own use "
                                 f"DeepKernelGP(train_x, train_y, feature_extractor) instead")
        self.horizon = horizon  # checked by its setter, before anything is built
        require_tensor(train_x, "GPLSTM train_x", arg="train_x")
        if train_x.dim() != 3 or train_x.shape[-1] == 0:
            raise DataError(f"GPLSTM train_x has shape {tuple(train_x.shape)}, expected windows (N, T, D) with D >= 1")
        if not train_x.is_floating_point():
            raise DataError(f"GPLSTM train_x has dtype {train_x.dtype}, expected floating windows; "
                            f"convert them with .to({torch.get_default_dtype()})")
        extractor = LSTMFeatures(train_x.shape[-1], hidden_size, num_features, num_layers)
        super().__init__(train_x, train_y, extractor.to(device=train_x.device, dtype=train_x.dtype), **kwargs)

    @keyword_only_soon("generator")
    def forecast(self, context: torch.Tensor, steps: int, num_samples: int = 200, level: float = 0.95, *,
                 generator: torch.Generator | None = None) -> Forecast:
        """Forecast a univariate series ``steps`` ahead by sampling paths.

        Each path feeds its own sampled value back into the window, so the
        spread of the paths carries the uncertainty of earlier steps forward
        (each step draws from the GP predictive given that path's window).  That
        needs a model of the *next* value: ``horizon=1`` (the default).

        The noise comes from ``generator`` (else from torch's global stream).  Each step's predictive is
        :meth:`predict`'s, under the caller's GPyTorch settings (exact variances unless the caller asks for
        ``gpytorch.settings.fast_pred_var()``).  The random
        numbers of GPyTorch's own estimates (Lanczos variances under ``fast_pred_var``,
        above ``gpytorch.settings.max_cholesky_size`` training windows) come from a generator
        seeded with 0 (:func:`~hybridpgm.rng_scope.fixed_rng`): with a ``generator`` the
        forecast is reproducible and leaves the global RNG where it was.

        :param context: the last ``T`` values of the series, shape ``T`` or ``T x 1``.
        :param int steps: horizon.
        :param int num_samples: sampled paths.
        :param float level: probability of the central interval.
        :param generator: a CPU :class:`torch.Generator` for the noise (drawn on the CPU, then moved);
            keyword-only (passed by position, as older releases allowed, it works with a :class:`FutureWarning`:
            :func:`~hybridpgm.keyword_alias.keyword_only_soon`).
        :returns: a :class:`Forecast`; ``steps=0`` gives empty paths (``num_samples x 0``).
        :raises ModelSpecError: the model's windows are not univariate.
        :raises DataError: ``context`` of the wrong shape or dtype (that of the training windows), or not finite.
        :raises DeviceError: ``context`` is not on the model's device.
        :raises ConfigError: ``steps`` not a non-negative integer, ``num_samples`` not an integer >= 2,
            ``level`` outside ``(0, 1)``, a ``generator`` that is not a CPU :class:`torch.Generator`, or a model
            trained on targets ``horizon > 1`` steps ahead (its predictions cannot be fed back as the next values).
        """
        horizon = getattr(self, "horizon", 1)
        if horizon != 1:
            raise ConfigError(f"GPLSTM.forecast feeds each prediction back as the next value, but this model "
                              f"predicts {horizon} steps after its window (horizon={horizon}); forecast with a "
                              "model of horizon=1, or predict h steps ahead directly with model.predict(windows)")
        window = self.example_shape[0]
        if self.example_shape[1] != 1:
            raise ModelSpecError("forecast feeds predictions back as inputs; it needs univariate windows (D = 1)")
        if not isinstance(context, torch.Tensor):
            raise DataError(f"forecast context must be a tensor of shape ({window},), got {type(context).__name__}")
        context = context.reshape(-1, 1) if context.dim() == 1 else context
        if context.shape != (window, 1):
            raise DataError(f"forecast context has shape {tuple(context.shape)}, expected ({window},) or ({window}, 1)")
        steps = sample_count(steps, "GPLSTM.forecast steps")
        num_samples = sample_count(num_samples, "GPLSTM.forecast num_samples")
        require_spread(num_samples)  # also for steps=0: the same calls are refused whatever the horizon
        level = unit_fraction(level, "GPLSTM.forecast level")
        generator = generator_or_none(generator, "GPLSTM.forecast generator")
        if generator is not None and generator.device.type != "cpu":
            raise ConfigError(f"GPLSTM.forecast draws its noise on the CPU; generator is on {generator.device}")
        check_inputs(context.unsqueeze(0), self.example_shape, "forecast context", dtype=self.train_x.dtype,
                     device=self.train_x.device)
        if steps == 0:
            empty = context.new_empty(0)
            return Forecast(empty, empty.clone(), empty.clone(), context.new_empty(num_samples, 0))
        return sampled_paths(self, context, steps, num_samples, level, generator=generator)


class SemiStochasticObjective:
    """Semi-stochastic training of a deep-kernel GP [1]: players ``"gp"``
    (hyperparameters, full-data exact marginal likelihood) then ``"network"``
    (feature extractor, mini-batch gradient estimate; see the module docstring).

    Train with ``hybridpgm.fit(objective, objective.dataset(), batch_size=B)``:
    batches are ``(x, y, index)``.  The loss reported for both players is the
    full-data negative log marginal likelihood per example.

    Both players need the features of all training inputs without gradients; the ``"network"`` player reuses
    those the ``"gp"`` player computed (one full-data pass of the extractor a step, not two) when the extractor is
    deterministic -- no dropout or batch norm in train mode, no module of a type not known to be deterministic --
    and its weights, modes and the training inputs did not change since
    (:mod:`hybridpgm.gp.kept_features`); the features and so the training run are then those of two passes, bit
    for bit.  An extractor with dropout in train mode is run again, as a second pass draws a new mask.

    The ``"network"`` player's full-data loss and :math:`G` are computed once per update and shared by its
    micro-batches (:class:`~hybridpgm.gp.kept_features.KeptGradient`): each further evaluation of an L-BFGS
    closure, at the weights L-BFGS tries, computes them anew, and so does a call outside :func:`hybridpgm.fit`
    after the weights, the modes or the training data changed.

    :param model: a :class:`~hybridpgm.gp.DeepKernelGP` (e.g. a :class:`GPLSTM`).
    """

    schedule = ["gp", "network"]

    def __init__(self, model: DeepKernelGP):
        self.model = model
        self.module = model
        self._grad: KeptGradient | None = None  # the network player's full loss and G, while still valid
        self._features: KeptFeatures | None = None  # the last full-data features, while still valid

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_features"] = state["_grad"] = None  # weak references: a copy computes its own
        return state

    def players(self) -> dict[str, list[nn.Parameter]]:
        """``"gp"``: the model's parameters outside the feature extractor; ``"network"``: the extractor's (each
        that requires a gradient).

        :raises ModelSpecError: the feature extractor has no parameter that requires a gradient.
        """
        network = [p for p in self.model.feature_extractor.parameters() if p.requires_grad]
        ids = {id(p) for p in network}
        gp = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        if not network:
            raise ModelSpecError("SemiStochasticObjective needs a feature extractor with parameters; "
                                 "use ExactMLLObjective for a plain GP")
        return {"gp": gp, "network": network}

    def dataset(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_x, train_y, index)`` for :func:`hybridpgm.fit`.

        :raises DataError: the model's training data went to the meta device (see
            :meth:`DeepKernelGP.training_data <hybridpgm.gp.DeepKernelGP.training_data>`)."""
        x, y = self.model.training_data()
        return x, y, torch.arange(x.shape[0], device=x.device)

    def _full_loss(self, h: torch.Tensor) -> torch.Tensor:
        """The full-data negative marginal log-likelihood at features ``h`` (``N x F``), the GP in its own dtype
        under autocast (:meth:`DeepKernelGP._gp_precision <hybridpgm.gp.DeepKernelGP._gp_precision>`)."""
        m = self.model
        with m._gp_precision(h) as (h, _):
            return -m.mll(m.gp.forward(m.gp_inputs(h)), m.training_data()[1])

    def _training_features(self, reuse: bool) -> torch.Tensor:
        """The features of all training inputs, without gradients: with ``reuse``, those the ``"gp"`` player kept
        where they are still the extractor's answer (:mod:`hybridpgm.gp.kept_features`); else computed (and kept
        if the extractor is deterministic).  The ``"gp"`` player, first in a step, always computes them: a fused
        optimizer's step of the network moves no version counter, so reuse stays within one step, and the ``"network"``
        player reads them once (:meth:`_feature_gradient`)."""
        m = self.model
        x, net, kept = m.training_data()[0], m.feature_extractor, self._features
        if reuse and kept is not None and kept.valid_for(net, x):
            return kept.features
        with torch.no_grad():
            h = m.training_features()
        self._features = KeptFeatures.of(net, x, h) if deterministic(net, (LSTMFeatures,)) else None
        return h

    def _feature_gradient(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-data loss and :math:`G = \\partial \\ell / \\partial H` (``N x F``) at the current state: those of
        an earlier micro-batch while still valid (:meth:`KeptGradient.valid_for
        <hybridpgm.gp.kept_features.KeptGradient.valid_for>`), else computed."""
        m = self.model
        data, kept = m.training_data(), self._grad
        if kept is not None and kept.valid_for(m, data):
            return kept.loss, kept.grad
        h = self._training_features(reuse=True).detach()  # a leaf of its own: the kept features stay without a grad
        # read once: a later evaluation in this step (an L-BFGS closure's) runs at weights an optimizer moved, which
        # a fused one does without moving the version counters the kept features are checked by
        self._features = None
        h.requires_grad_(True)
        loss = self._full_loss(h)
        (grad,) = torch.autograd.grad(loss, h)
        self._grad = KeptGradient.of(m, data, loss.detach(), grad)
        return self._grad.loss, self._grad.grad

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The full-data negative log marginal likelihood per example; for ``"network"``, with the gradient of
        the mini-batch estimate in the extractor's weights.

        :param player: ``"gp"`` or ``"network"``.
        :param batch: ``(x, y, index)`` from :meth:`dataset`: windows ``B x ...``, targets ``B`` and their rows in
            the training data ``B`` (only ``x`` and ``index`` are read).
        :raises ConfigError: an unknown ``player``.
        :raises DataError: a batch that is not ``(x, y, index)`` with ``index`` an integer vector of
            ``x``'s length (rows of the training data, as :meth:`dataset` gives), or row numbers outside
            ``[0, N)``: inside :func:`hybridpgm.fit` that check joins the step's one host read, before the
            network player's update."""
        check_player(player, ("gp", "network"), "SemiStochasticObjective")
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            got = f"a {type(batch).__name__}" + (f" of {len(batch)} element(s)" if isinstance(batch, (tuple, list))
                                                  else "")
            raise DataError(f"SemiStochasticObjective batches are (x, y, index) from objective.dataset(), got {got}")
        x, _, index = batch
        rows = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() > 0 else None
        if not (isinstance(index, torch.Tensor) and index.dim() == 1 and index.shape[0] == rows
                and not index.is_floating_point() and not index.is_complex() and index.dtype != torch.bool):
            got = (f"shape {tuple(index.shape)} and dtype {index.dtype}" if isinstance(index, torch.Tensor)
                   else f"type {type(index).__name__}")
            raise DataError(f"SemiStochasticObjective batch index has {got}, expected integer row numbers of "
                            f"shape ({rows if rows is not None else 'B'},), one per window of x")
        if player == "gp":
            self._grad = None  # the hyperparameters are about to change
            return self._full_loss(self._training_features(reuse=False))
        full, grad = self._feature_gradient()
        h = self.model.features(x)
        n = self.model.train_x.shape[0]
        index = index.to(grad.device)
        in_range = ((index >= 0) & (index < n)).all()

        def out_of_range() -> Exception:
            bad = index[(index < 0) | (index >= n)]
            return DataError(f"SemiStochasticObjective batch index holds {bad.numel()} row number(s) outside "
                             f"[0, {n}) (first: {int(bad[0])}); use the index column of objective.dataset()")

        check_or_defer(in_range, out_of_range, f"SemiStochasticObjective batch index holds a row outside [0, {n})")
        # a clamped index until the deferred check is read: a CUDA gather out of range is a device assert
        surrogate = (n / x.shape[0]) * (grad[index.clamp(0, n - 1)] * h).sum()
        # value: the full-data loss; gradient: the mini-batch estimate of its w-gradient
        return surrogate - surrogate.detach() + full

    def train_step_end(self, step: int) -> None:
        """Drop the kept features and gradient: the weights changed.

        :param step: the 0-based index of the step that ended (``History`` records it as ``step + 1``); unused.
        """
        self._grad = self._features = None  # the network changed


def __getattr__(name: str):
    """``train_gp_lstm``, which moved to :mod:`hybridpgm.gp.gp_lstm_recipe` (imported from here before)."""
    if name == "train_gp_lstm":
        from hybridpgm.gp.gp_lstm_recipe import train_gp_lstm

        return train_gp_lstm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
