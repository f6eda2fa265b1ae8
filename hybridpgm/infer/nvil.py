"""Neural variational inference and learning (NVIL) on Pyro's ``TraceGraph_ELBO``.

For a non-reparameterizable guide the ELBO gradient is estimated with the
score function (REINFORCE).  Pyro's :class:`~pyro.infer.TraceGraph_ELBO`
already gives each latent site :math:`h_l` its *local* learning signal, the
downstream cost

.. math:: \\ell_l(x, h) = \\sum_{\\text{sites } s \\text{ downstream of } h_l}
          \\log p(s \\mid \\cdot) - \\log q(s \\mid \\cdot),

and subtracts an input-dependent baseline :math:`C_{\\psi_l}(x)` given through
the site's ``infer={"baseline": {"nn_baseline": ..., "nn_baseline_input": x}}``.
NVIL [1] adds two more variance-reduction steps, which :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO`
implements on top of Pyro's estimator (:mod:`hybridpgm.infer.nvil_elbo`):

* **centering**: a running mean :math:`c_l` of :math:`\\ell_l - C_{\\psi_l}(x)`;
* **variance normalization**: division by :math:`\\max(1, \\sqrt{v_l})`, with
  :math:`v_l` a running variance of the same quantity.

The guide's surrogate is then

.. math:: \\sum_l \\frac{\\ell_l - C_{\\psi_l}(x) - c_l}{\\max(1, \\sqrt{v_l})}\\,
          \\log q_\\phi(h_l \\mid \\cdot)

(the factor held constant), and :math:`\\psi` minimises
:math:`(\\ell_l - C_{\\psi_l}(x) - c_l)^2`.  :math:`c_l, v_l` are updated
*after* they are used (exponential decay ``decay``), so the baseline never
depends on the current sample and the expected gradient of :math:`\\theta` is
exactly the ELBO gradient, and that of each guide layer is the ELBO gradient
divided by the constant :math:`\\max(1, \\sqrt{v_l})`.

**Mini-batches.**  In a subsampled data plate (``num_data=N`` on :math:`B` rows) each site's log-densities
carry the plate's factor :math:`s = N / B`, and so does its downstream cost :math:`s\\,\\ell_l`.  For a site
with learned baselines the cost is divided by that factor first (not by a weight of the user's own, such as a KL
anneal's :func:`pyro.poutine.scale`, which stays in the cost as before): :math:`C_{\\psi_l}`, :math:`c_l` and
:math:`v_l` see the per-datapoint :math:`\\ell_l`, and the surrogate term and :math:`\\psi`'s squared error are
multiplied by :math:`s` afterwards.  The estimator stays unbiased, the statistics and the step of
:math:`\\phi` do not depend on :math:`B`, and at :math:`s = 1` nothing changes (no arithmetic is done).

Under :func:`hybridpgm.fit` with ``accumulate = M`` the statistics belong to the optimizer update, not to
the micro-batch: all M micro-batches of one update are centred and scaled with :math:`c_l, v_l` as they
were before it, and :math:`c_l, v_l` then take one decay step with the mean and variance pooled over the
update's signals (:meth:`NVILBaselines.update`), exactly what ``accumulate=1`` computes on the whole batch.

References:

1. A. Mnih, K. Gregor, *Neural Variational Inference and Learning in Belief
   Networks*, ICML 2014.
2. J. Schulman, N. Heess, T. Weber, P. Abbeel, *Gradient Estimation Using
   Stochastic Computation Graphs*, NeurIPS 2015.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import torch
from torch import nn

from hybridpgm.checks import check_player, flag, site_prefix
from hybridpgm.errors import ConfigError
from hybridpgm.infer.model_guide_objective import ModelGuideObjective
from hybridpgm.infer.nvil_baselines import (BASELINES_MODULE_NAME, NVILBaselines, _AttachBaselines,  # noqa: F401
                                            _check_baseline_shape, _register_baselines)
from hybridpgm.infer.nvil_elbo import NVIL_ELBO
from hybridpgm.infer.nvil_options import _decay, _plate_nesting, _plate_nesting_of
from hybridpgm.options import Option

__all__ = ["NVIL", "NVILBaselines", "NVIL_ELBO"]


def default_sites(owner: nn.Module, model: Callable, guide: Callable, model_kwargs: dict) -> list[str]:
    """The sites :class:`NVIL` gives baselines to without ``sites=``: ``owner.latent_sites`` (``[]`` without
    one), each under the prefix ``model`` and ``guide`` are called with -- ``model_kwargs["prefix"]`` (passed
    to both on every call), else the ``prefix`` keyword both are bound with by :func:`functools.partial`, else
    ``""`` -- as the models' ``prefix=`` names them (:meth:`SigmoidBeliefNet.model`: ``"a/h1", ..., "a/hL"``).

    :raises ConfigError: the prefix is not a string, or ``model`` and ``guide`` are bound with different ones.
    """
    def bound(fn):  # the prefix keyword of (nested) partials, else None
        while isinstance(fn, functools.partial) and "prefix" not in fn.keywords:
            fn = fn.func
        return fn.keywords["prefix"] if isinstance(fn, functools.partial) else None

    prefix = model_kwargs["prefix"] if "prefix" in model_kwargs else bound(model)
    if "prefix" not in model_kwargs and prefix != bound(guide):
        raise ConfigError(f"NVIL: the model is bound with prefix={prefix!r} and the guide with prefix="
                          f"{bound(guide)!r}; their sites must have the same names (or pass sites=)")
    prefix = site_prefix("" if prefix is None else prefix, "NVIL model/guide")
    return [prefix + site for site in getattr(owner, "latent_sites", [])]


class NVIL(ModelGuideObjective):
    """NVIL as an objective of :func:`hybridpgm.fit`, with one player ``"elbo"``
    updating the model, the guide and the baselines together.

    :param model: Pyro model, called as ``model(*batch)``.
    :param guide: Pyro guide with non-reparameterizable latent sites, called the same way.
    :param sites: latent sites to give baselines to.  Default (:func:`default_sites`): the owning module's
        ``latent_sites`` under the ``prefix`` that ``model`` and ``guide`` are called with, e.g.
        ``model_kwargs={"prefix": "a/"}`` gives ``["a/h1", ..., "a/hL"]`` for a :class:`SigmoidBeliefNet`.
    :param int input_dim: size of the baseline input (the batch's first tensor's
        last dim; default: the owning module's ``layer_sizes[0]``).
    :param int hidden_dim: hidden width of each baseline network (100 in [1]).
    :param int num_particles: score-function samples per datapoint (vectorized).
    :param float decay: decay :math:`\\alpha \\in [0, 1)` of the running mean :math:`c_l` and variance
        :math:`v_l` of the centred signals (0.8; see :class:`NVILBaselines`).
    :param bool variance_normalization: divide each signal by :math:`\\max(1, \\sqrt{v_l})` (see
        :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO`).
    :param bool centering: subtract the running mean :math:`c_l` from each signal (see
        :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO`).
    :param max_plate_nesting: the number of nested plates in the model and guide (a non-negative integer), passed to
        Pyro's :class:`~pyro.infer.TraceGraph_ELBO`; ``None``: guessed at the first :meth:`loss` (without using up
        random numbers or changing the modules' buffers).
    :param options: passed to :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`
        (``model_kwargs``, ...).
    :raises ConfigError: see :class:`NVILBaselines`, :class:`~hybridpgm.infer.nvil_elbo.NVIL_ELBO` and
        :func:`default_sites`; also a ``max_plate_nesting`` that is neither ``None`` nor a non-negative integer,
        and an unknown player.

    The baselines are drawn in the dtype of the model's parameters (on the host, whatever torch's default dtype
    and device: a seed gives the same baselines on every device), moved to their device, and follow them when
    the model alone is converted or moved afterwards (``sbn.double()``); ``module`` holds both, so
    :func:`hybridpgm.fit` (and ``objective.module.to(...)``) moves them together.
    """

    schedule = ["elbo"]

    def __init__(self, model: Callable, guide: Callable, *, sites: Sequence[str] | None = None,
                 input_dim: int | None = None, hidden_dim: int = 100, num_particles: int = 1, decay: float = 0.8,
                 variance_normalization: bool = True, centering: bool = True,
                 max_plate_nesting: int | None = None, **options: Any):
        super().__init__(model, guide, **options)
        owner = self.module
        if sites is None:
            sites = default_sites(owner, model, guide, self.model_kwargs)
        elif not isinstance(sites, (str, bytes)):
            sites = list(sites)
        if input_dim is None:
            input_dim = getattr(owner, "layer_sizes", [None])[0]
        if not sites or input_dim is None:
            raise ConfigError("NVIL needs sites= (the guide's latent site names) and input_dim=")
        ref = next((p for p in self.theta + self.phi if p.is_floating_point()), None)  # drawn in the model's dtype
        self.baselines = NVILBaselines(sites, input_dim, hidden_dim, decay, dtype=None if ref is None else ref.dtype)
        self._follow_model()  # moved to the model's device
        self.module = nn.ModuleDict({"model": owner, "baselines": self.baselines})
        self.elbo = NVIL_ELBO(self.baselines, num_particles, variance_normalization=variance_normalization,
                              centering=centering)
        self.max_plate_nesting = max_plate_nesting  # checked by the option, which gives it to the ELBO
        # the baselines are parameters of the "elbo" player, stepped by fit's optimizer: no second route
        # through Pyro's param store (and no entries left in the user's store by a direct call of loss)
        self.elbo.registers_baselines = False

    num_particles = Option(
        doc="Score-function samples per datapoint (``elbo.num_particles``; fixed at construction).", owner="elbo",
        fixed="at construction (it decides whether the particles are vectorized and the guessed max_plate_nesting)")
    variance_normalization = Option(
        lambda self, value: flag(value, "NVIL variance_normalization"),
        "Divide each signal by :math:`\\max(1, \\sqrt{v_l})` (``elbo.variance_normalization``; ``True`` or ``False``).",
        owner="elbo")
    centering = Option(
        lambda self, value: flag(value, "NVIL centering"),
        "Subtract the running mean :math:`c_l` (``elbo.centering``; ``True`` or ``False``).", owner="elbo")
    decay = Option(
        lambda self, value: _decay(value), "The running statistics' decay (``baselines.decay``, in [0, 1)).",
        owner="baselines")
    max_plate_nesting = Option(lambda self, value: _plate_nesting(self, value), """The plates' nesting as given
        (``None``: guessed at the first :meth:`loss`).  An assignment is checked as the constructor checks it and sets
        ``elbo.max_plate_nesting``, read by each call (plus the particle plate; ``inf``, guessed again, for ``None``).

        :raises ConfigError: (on assignment) a value that is neither ``None`` nor a non-negative integer.""",
        missing=lambda self: _plate_nesting_of(self.elbo))

    def players(self) -> dict[str, list[torch.nn.Parameter]]:
        """``"elbo"``: the model's, the guide's and the baselines' parameters."""
        return {"elbo": self.theta + self.phi + list(self.baselines.parameters())}

    def _follow_model(self) -> None:
        """Put the baselines in the dtype and on the device of the model's parameters (no host read)."""
        ref = next((p for p in self.theta + self.phi if p.is_floating_point()), None)
        mine = self.baselines.reference()
        if ref is not None and (mine.dtype != ref.dtype or mine.device != ref.device):
            self.baselines.to(device=ref.device, dtype=ref.dtype)

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """:meth:`NVIL_ELBO.differentiable_loss <hybridpgm.infer.nvil_elbo.NVIL_ELBO.differentiable_loss>` on
        ``batch`` (0-d), divided by the batch size when ``per_example``; then the sites outside the batch's plates
        (a global latent's prior and guide terms) carry the share :math:`m_i / (B R)` of the micro-batch that
        :func:`hybridpgm.fit` runs in its update (:meth:`~ModelGuideObjective.global_share`), so that
        ``accumulate`` and the ranks train as one unsplit batch.  Pyro leaves a site's score function unscaled and
        scales its log-densities, so a non-reparameterized global site :math:`\\beta` gets the surrogate
        :math:`\\nabla \\log q(\\beta)\\,(w_i G(\\beta) + \\sum_{b \\in i} \\ell_b)`, micro-batch :math:`i`'s part of
        the batch's :math:`\\nabla \\log q(\\beta)\\,(G(\\beta) + \\sum_b \\ell_b)`.

        :param str player: ``"elbo"``.
        :param batch: the model's positional arguments (a tensor, or a tuple of them)."""
        check_player(player, ("elbo",), "NVIL")
        self._follow_model()
        args, size = self.batch_args(batch)
        self.check_per_example(args, size)  # per_example on a subsampled plate: ConfigError
        if self.elbo.vectorize_particles and self.elbo.max_plate_nesting == float("inf"):
            # guessed once, leaving the objective's module (baselines and model) as it was: exact resume
            self.elbo._guess_max_plate_nesting(self.model, self.elbo._attach(self.guide, args), args,
                                               self.model_kwargs, modules=(self.module,))
        with self.global_share():  # a global latent's terms: the micro-batch's share of fit's update
            loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **self.model_kwargs)
        return loss / size if self.per_example else loss
