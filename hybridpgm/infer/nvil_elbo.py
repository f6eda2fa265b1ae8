"""NVIL's estimator: :class:`NVIL_ELBO`, Pyro's :class:`~pyro.infer.TraceGraph_ELBO` with NVIL's centering and
variance normalization of each latent site's learning signal.

:class:`~pyro.infer.TraceGraph_ELBO` gives each latent site :math:`h_l` of a non-reparameterizable guide its local
learning signal, the downstream cost :math:`\\ell_l` less the site's baseline :math:`C_{\\psi_l}(x)`.  For the sites of
an :class:`~hybridpgm.infer.nvil_baselines.NVILBaselines` the signal is also centred by the running mean
:math:`c_l` and divided by :math:`\\max(1, \\sqrt{v_l})`, the statistics taken before this batch's update, per
datapoint in a subsampled plate; the surrogate, the statistics and the mini-batch rule are those of
:mod:`hybridpgm.infer.nvil` (the objective of :func:`hybridpgm.fit` built on this estimator), which gives the
maths and the references.

References:

1. A. Mnih, K. Gregor, *Neural Variational Inference and Learning in Belief
   Networks*, ICML 2014.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from pyro.distributions.util import detach, is_identically_one, is_identically_zero
from pyro.infer import TraceGraph_ELBO
from pyro.infer.tracegraph_elbo import _get_baseline_options
from pyro.infer.util import MultiFrameTensor
from pyro.ops.provenance import detach_provenance, get_provenance

from hybridpgm.checks import check_device, flag, positive_int
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import DataError, ObjectiveError
from hybridpgm.infer.nvil_baselines import NVILBaselines, _AttachBaselines, _check_baseline_shape, _register_baselines
from hybridpgm.infer.particle_elbo import guess_plate_nesting
from hybridpgm.infer.subsample_scale import subsample_factor
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.network_checks import check_output

__all__ = ["NVIL_ELBO"]


class NVIL_ELBO(TraceGraph_ELBO):
    """:class:`~pyro.infer.TraceGraph_ELBO` with NVIL's centering and variance normalization.

    Without ``baselines`` it is Pyro's estimator with whatever baselines the
    guide declares.  With them, every site named in ``baselines.sites`` gets the
    learned baseline, centering and variance normalization, and each call
    registers the baseline networks with ``pyro.module`` under the name
    :data:`~hybridpgm.infer.nvil_baselines.BASELINES_MODULE_NAME` (``"nvil_baselines"``; entries of that name left
    in the store by other baselines are replaced), so that plain
    :class:`pyro.infer.SVI` trains them with the model and guide.
    (:class:`~hybridpgm.infer.nvil.NVIL` under :func:`hybridpgm.fit` trains them as parameters of its
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
