"""Neural variational inference and learning (NVIL) on Pyro's ``TraceGraph_ELBO``.

For a non-reparameterizable guide the ELBO gradient is estimated with the
score function (REINFORCE).  Pyro's :class:`~pyro.infer.TraceGraph_ELBO`
already gives each latent site :math:`h_l` its *local* learning signal, the
downstream cost

.. math:: \\ell_l(x, h) = \\sum_{\\text{sites } s \\text{ downstream of } h_l}
          \\log p(s \\mid \\cdot) - \\log q(s \\mid \\cdot),

and subtracts an input-dependent baseline :math:`C_{\\psi_l}(x)` given through
the site's ``infer={"baseline": {"nn_baseline": ..., "nn_baseline_input": x}}``.
NVIL [1] adds two more variance-reduction steps, which :class:`NVIL_ELBO`
implements on top of Pyro's estimator:

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
from collections import defaultdict
from typing import Any, Callable, Sequence

import torch
from pyro.distributions.util import detach, is_identically_one, is_identically_zero
from pyro.infer import TraceGraph_ELBO
from pyro.infer.tracegraph_elbo import _get_baseline_options
from pyro.infer.util import MultiFrameTensor
from pyro.ops.provenance import detach_provenance, get_provenance
from torch import nn

from hybridpgm.checks import check_device, check_player, flag, positive_int, site_prefix
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.infer.model_guide_objective import ModelGuideObjective
from hybridpgm.infer.nvil_baselines import (BASELINES_MODULE_NAME, NVILBaselines, _AttachBaselines,  # noqa: F401
                                            _check_baseline_shape, _register_baselines)
from hybridpgm.infer.nvil_options import _decay, _plate_nesting, _plate_nesting_of
from hybridpgm.infer.particle_elbo import guess_plate_nesting
from hybridpgm.infer.subsample_scale import subsample_factor
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.network_checks import check_output
from hybridpgm.options import Option

__all__ = ["NVIL", "NVILBaselines", "NVIL_ELBO"]

class NVIL_ELBO(TraceGraph_ELBO):
    """:class:`~pyro.infer.TraceGraph_ELBO` with NVIL's centering and variance normalization.

    Without ``baselines`` it is Pyro's estimator with whatever baselines the
    guide declares.  With them, every site named in ``baselines.sites`` gets the
    learned baseline, centering and variance normalization, and each call
    registers the baseline networks with ``pyro.module`` under the name
    :data:`BASELINES_MODULE_NAME` (``"nvil_baselines"``; entries of that name left
    in the store by other baselines are replaced), so that plain
    :class:`pyro.infer.SVI` trains them with the model and guide.
    (:class:`NVIL` under :func:`hybridpgm.fit` trains them as parameters of its
    ``"elbo"`` player instead, and registers nothing.)

    :meth:`differentiable_loss` returns a scalar whose *value* is the negative
    ELBO estimate and whose *gradient* is that of the surrogate loss
    (including the baselines' squared-error loss).

    :param NVILBaselines baselines: the :math:`\\psi` networks and running statistics.
    :param bool variance_normalization: divide by :math:`\\max(1, \\sqrt{v_l})`.
    :param bool centering: subtract the running mean :math:`c_l`.
    :param int num_particles: score-function samples per datapoint (default ``1``; vectorized when ``> 1``).
    :param kwargs: further options of :class:`~pyro.infer.TraceGraph_ELBO` (``max_plate_nesting``, ...).
    :raises ConfigError: ``num_particles`` is not a positive integer, or ``variance_normalization`` or
        ``centering`` not ``True`` or ``False``.
    :raises ObjectiveError: (on a call) a site named in ``baselines`` is not a latent site of the guide, or a
        site's baseline (``nn_baseline``'s output or ``baseline_value``) is not one tensor whose shape broadcasts
        into that of the site's downstream cost (``[B, 1]`` against ``[B]`` would silently enlarge it).
    """

    @keyword_only_soon("variance_normalization", "centering")
    def __init__(self, baselines: NVILBaselines | None = None, num_particles: int = 1, *,
                 variance_normalization: bool = True, centering: bool = True, **kwargs):
        num_particles = positive_int(num_particles, "NVIL num_particles")
        super().__init__(num_particles=num_particles, vectorize_particles=num_particles > 1, **kwargs)
        self.baselines = baselines
        #: register the baselines with ``pyro.module`` on each call (what plain SVI needs to train them)
        self.registers_baselines = True
        self.variance_normalization = flag(variance_normalization, "NVIL variance_normalization")
        self.centering = flag(centering, "NVIL centering")

    def _guess_max_plate_nesting(self, model, guide, args, kwargs, modules=()):
        """hybridpgm's guess (:func:`~hybridpgm.infer.particle_probe.guess_plate_nesting`, the value Pyro's
        would find, with the particle plate of ``vectorize_particles`` added) in place of Pyro's: it logs no
        ``"Guessed max_plate_nesting"`` line, uses up no random numbers and leaves the buffers of the modules
        behind ``model`` and ``guide``, of ``modules`` and of the baselines as they were (a resumed run
        guesses again).

        :param modules: further :class:`torch.nn.Module` s the programs use (an objective's ``module``).
        """
        extra = () if self.baselines is None else (self.baselines,)
        nesting = guess_plate_nesting(model, guide, args, kwargs, (*modules, *extra))
        self.max_plate_nesting = nesting + (1 if self.vectorize_particles and self.num_particles > 1 else 0)

    def _attach(self, guide, args):
        if self.baselines is None:
            return guide
        if not args or not isinstance(args[0], torch.Tensor):
            raise ObjectiveError("NVIL baselines take the guide's first argument (a tensor) as input")
        ref = self.baselines.reference()
        width = self.baselines.input_width()
        if args[0].dim() == 0 or width is not None and args[0].shape[-1] != width:
            raise DataError(f"NVIL baselines take inputs of width input_dim={width}; the guide's first argument "
                            f"has shape {tuple(args[0].shape)}")
        # the baselines read the data as the model does: bool and integers exactly in their dtype
        what = "NVIL baseline input (the guide's first argument)"
        check_device(args[0], ref, what)
        attached = _AttachBaselines(self.baselines, as_model_dtype(args[0], ref.dtype, what))(guide)
        if not self.registers_baselines:
            return attached

        def guide_with_baselines(*guide_args, **guide_kwargs):
            _register_baselines(self.baselines)  # inside the guide: SVI's param capture sees the parameters
            return attached(*guide_args, **guide_kwargs)

        return guide_with_baselines

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """0-d: the negative ELBO estimate as value, the surrogate loss's gradient (see the class docstring).

        :param model: the Pyro model, called as ``model(*args, **kwargs)``.
        :param guide: the Pyro guide, called alike (the baselines take ``args[0]``)."""
        elbo, surrogate = self._loss_and_surrogate_loss(model, self._attach(guide, args), args, kwargs)
        return -elbo.detach() + (surrogate - surrogate.detach())

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate :meth:`differentiable_loss` and return its value (what :class:`pyro.infer.SVI` calls).

        :param model: the Pyro model; ``args``, ``kwargs``: its arguments.
        :param guide: the Pyro guide."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The negative ELBO estimate as a float, without gradients (Pyro's, the baselines attached).

        :param model: the Pyro model; ``args``, ``kwargs``: its arguments.
        :param guide: the Pyro guide."""
        return super().loss(model, self._attach(guide, args), *args, **kwargs)

    def _loss_and_surrogate_loss_particle(self, model_trace, guide_trace):
        return self._compute_elbo(model_trace, guide_trace)

    def _compute_elbo(self, model_trace, guide_trace):
        # Pyro's tracegraph_elbo._compute_elbo, with NVIL centering and normalization
        # of each site's learning signal.
        if self.baselines is not None:
            absent = [name for name in self.baselines.sites if name not in guide_trace.nodes]
            if absent:
                latent = [n for n, site in guide_trace.nodes.items()
                          if site["type"] == "sample" and not site["is_observed"]]
                raise ObjectiveError(f"NVIL baselines are set for site(s) {absent} that the guide does not sample "
                                     f"(guide latent sites: {latent})")
        elbo = 0.0
        surrogate_elbo = 0.0
        baseline_loss = 0.0
        downstream_costs = defaultdict(lambda: MultiFrameTensor())
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + site["log_prob_sum"]
                surrogate_elbo = surrogate_elbo + site["log_prob_sum"]
                for key in get_provenance(site["log_prob_sum"]):
                    downstream_costs[key].add((site["cond_indep_stack"], site["log_prob"]))
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo - site["log_prob_sum"]
                entropy_term = site["score_parts"].entropy_term
                if not is_identically_zero(entropy_term):
                    surrogate_elbo = surrogate_elbo - entropy_term.sum()
                for key in get_provenance(site["log_prob_sum"]):
                    downstream_costs[key].add((site["cond_indep_stack"], -site["log_prob"]))
        for node, cost in downstream_costs.items():
            guide_site = guide_trace.nodes[node]
            cost = detach_provenance(cost.sum_to(guide_site["cond_indep_stack"])).detach()
            signal, loss_term = self._learning_signal(node, guide_site, cost)
            baseline_loss = baseline_loss + loss_term
            surrogate_elbo = surrogate_elbo + (guide_site["score_parts"].score_function * signal).sum()
        surrogate_loss = -surrogate_elbo + baseline_loss
        return detach_provenance(elbo), detach_provenance(surrogate_loss)

    def _learning_signal(self, node, guide_site, cost):
        """The site's learning signal (its factor of the score function) and its baselines' squared error.

        A site of :attr:`baselines` is centred and scaled per datapoint: ``cost`` (its plate-scaled downstream
        cost :math:`s\\,\\ell_l`, with :math:`s = N / B` the factor of its subsampled plates,
        :func:`~hybridpgm.infer.subsample_scale.subsample_factor`; a weight of the user's own, a KL anneal's
        :func:`pyro.poutine.scale`, stays in :math:`\\ell_l`) is divided by :math:`s`, :math:`C_{\\psi_l}`,
        :math:`c_l` and :math:`v_l` see :math:`\\ell_l` alone, and the signal and the squared error are multiplied
        by :math:`s` afterwards.  Any other site gets Pyro's
        treatment (its own ``baseline`` options on the scaled cost).

        :returns: the detached signal (the shape of ``cost``) and the squared error (0-d, or ``0.0``).
        :raises ObjectiveError: the baseline network returns no tensor, or a baseline of a shape that does not
            broadcast into ``cost``'s
            (:func:`~hybridpgm.infer.nvil_baselines._check_baseline_shape`)."""
        nn_baseline, nn_input, use_avg, _, value = _get_baseline_options(guide_site)
        if use_avg:
            raise ObjectiveError(f"site {node!r}: use NVIL's centering instead of use_decaying_avg_baseline")
        baseline = 0.0
        if nn_baseline is not None:
            baseline = nn_baseline(detach(nn_input))
            if not isinstance(baseline, torch.Tensor):  # a tuple or dict: named, not torch's TypeError below
                check_output(baseline, f"NVIL: the baseline network of site {node!r}", ObjectiveError)
        elif value is not None:
            baseline = value
        if isinstance(baseline, torch.Tensor):
            _check_baseline_shape(node, baseline.shape, cost.shape)
        tracked = self.baselines is not None and node in self.baselines.nets
        site_scale = subsample_factor(guide_site) if tracked else 1.0  # N / B only: a KL weight stays in the cost
        if not is_identically_one(site_scale):
            cost = cost / site_scale  # per datapoint: the statistics and C_psi do not depend on N / B
        c, scale = 0.0, 1.0
        if tracked:
            mean, var = self.baselines.statistics(node)  # the values before this batch's (fit update's) update
            if self.centering:
                c = mean
            if self.variance_normalization:
                scale = var.sqrt().clamp(min=1.0)
        centred = cost - baseline - c
        squares = centred.pow(2) if is_identically_one(site_scale) else centred.pow(2) * site_scale
        loss_term = squares.sum() if isinstance(baseline, torch.Tensor) and baseline.requires_grad else 0.0
        if tracked and self.baselines.training:
            self.baselines.update(node, (cost - baseline).detach())
        signal = centred / scale
        return (signal if is_identically_one(site_scale) else signal * site_scale).detach(), loss_term


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
        :class:`NVIL_ELBO`).
    :param bool centering: subtract the running mean :math:`c_l` from each signal (see :class:`NVIL_ELBO`).
    :param max_plate_nesting: the number of nested plates in the model and guide (a non-negative integer), passed to
        Pyro's :class:`~pyro.infer.TraceGraph_ELBO`; ``None``: guessed at the first :meth:`loss` (without using up
        random numbers or changing the modules' buffers).
    :param options: passed to :class:`~hybridpgm.infer.model_guide_objective.ModelGuideObjective`
        (``model_kwargs``, ...).
    :raises ConfigError: see :class:`NVILBaselines`, :class:`NVIL_ELBO` and :func:`default_sites`; also a
        ``max_plate_nesting`` that is neither ``None`` nor a non-negative integer, and an unknown player.

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
        """:meth:`NVIL_ELBO.differentiable_loss` on ``batch`` (0-d), divided by the batch size when ``per_example``.

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
        loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **self.model_kwargs)
        return loss / size if self.per_example else loss
