r"""Refuse, before :func:`hybridpgm.fit` sets a run up, an estimate that its micro-batches cannot split.

Two refusals of :mod:`~hybridpgm.infer.global_share` come from the step itself, when
:class:`~hybridpgm.infer.SVIObjective` (with ``per_example=True``) computes the loss of a micro-batch of share
:math:`w_i = m_i / (B R)` other than 1 (``accumulate > 1`` on a batch of two rows or more, or several ranks):

* :class:`~hybridpgm.infer.IWAE` with a latent outside the batch's plate: one importance weight over the whole
  batch, :math:`\log \frac1K \sum_k \frac{p(\beta_k)}{q(\beta_k)} \prod_b w_{bk}`
  (:func:`~hybridpgm.infer.global_share.refuse_joint_weights`);
* a site outside the batch's plate that :class:`~pyro.infer.TraceEnum_ELBO` or :class:`~pyro.infer.TraceTMC_ELBO`
  enumerates: :math:`\log \sum_c p(c) \prod_b p(x_b \mid c)`
  (:func:`~hybridpgm.infer.global_share.enumerated_site_error`).

Neither bound of a batch is a sum of its micro-batches' bounds, whatever the weights.  :class:`IWAE` makes the batch
one weight for any site outside the batch's plate, an observed one too (:func:`one_weight_sites`: a ``pyro.factor``
outside the data plate, a likelihood ``.to_event`` over the rows), which the step's refusal, on the latent sites
only, let through: with a factor :math:`F` outside the plate the batch's bound :math:`F + \log \frac1K \sum_k
\prod_b w_{bk}` is no sum over micro-batches either (8 rows, :math:`K = 4`, draws held fixed: 14.93 nats for the
batch, 13.11 for the sum of its two halves; without the factor 12.6359 both), so it is refused here too.
:class:`~pyro.infer.TraceTMC_ELBO` with every latent inside the data plate takes one log-mean-exp per row (the same
draws: 12.6359 nats for the batch and for its two halves, the IWAE bound's) and is not refused.

Found at step 1, the run had by then taken its checkpoint's lock, opened or resumed the checkpoint and run the
callbacks' ``on_fit_start``.
:func:`refuse_unsplit_estimates` (called by :meth:`SVIObjective.check_batching
<hybridpgm.infer.SVIObjective.check_batching>`, which ``fit`` runs on its first batch before any of that:
:func:`~hybridpgm.train.objective.set_up`) raises the same :class:`~hybridpgm.errors.ConfigError` from a probe of
the first micro-batch ``fit`` would run (:func:`~hybridpgm.train.micro_batches.split_batch`): one guide trace and
the model replayed on it, as :func:`~hybridpgm.infer.subsample_scale.check_plate_scale` runs them
(:func:`~hybridpgm.infer.particle_probe.probing`: no random number of the caller's used up, no module buffer
changed, so a run that is accepted trains bit for bit as before).  The probe runs only where a refusal is possible:
an :class:`IWAE` or enumerating ELBO, ``per_example=True`` and a share other than 1; a model whose probe fails, or
whose plate subsamples the batch (refused by the step's own probe), is left to the step.  A global site whose
plate or value has the micro-batch's size is told from the rows' as the step tells it, by a second probe on the
rows twice over (:func:`~hybridpgm.infer.row_probe.probe_doubled`), for both refusals.

A site is enumerated as Pyro's :class:`~pyro.poutine.enum_messenger.EnumMessenger` decides: a latent site of a
:class:`~pyro.distributions.torch_distribution.TorchDistributionMixin` with ``infer={"enumerate": "parallel"}``, in
the guide, or in the model and not in the guide (the model replays the guide's); one added inside
:func:`~hybridpgm.train.update_scope.weighted_per_update` is the model's own business, as at the step.
"""

from __future__ import annotations

from typing import Any

import pyro.poutine as poutine
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.infer import TraceEnum_ELBO, TraceTMC_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from hybridpgm.infer.global_share import GlobalShare, enumerated_site_error, refuse_joint_weights
from hybridpgm.infer.global_share import _size, sites_outside_batch_plates
from hybridpgm.infer.iwae import IWAE
from hybridpgm.infer.particle_probe import probing
from hybridpgm.infer.row_probe import probe_doubled
from hybridpgm.infer.subsample_scale import scaled_batch_plate
from hybridpgm.train.batches import batch_size_of
from hybridpgm.train.micro_batches import split_batch
from hybridpgm.train.update_scope import weighted_per_update_active

__all__ = ["enumerated_sites", "one_weight_sites", "refuse_unsplit_estimates"]


class _SelfWeighted(Messenger):
    """Record the names of the sample sites added inside :func:`~hybridpgm.train.update_scope.weighted_per_update`."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and weighted_per_update_active():
            self.names.add(msg["name"])


def enumerated_sites(guide_trace: poutine.Trace, model_trace: poutine.Trace) -> tuple[str, ...]:
    """The sites Pyro's enumerating ELBOs would enumerate in this (guide, model replayed on the guide) trace pair:
    latent sites of a torch distribution with ``infer["enumerate"] == "parallel"`` of the guide, and of the model
    when the guide has no site of that name (see the module docstring), in the order they run.

    :param guide_trace: a guide's trace.
    :param model_trace: the model's trace, replayed on ``guide_trace``."""
    names = []
    for trace, is_model in ((guide_trace, False), (model_trace, True)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or not isinstance(site["fn"], TorchDistributionMixin):
                continue
            if (site["infer"] or {}).get("enumerate") == "parallel" and not (is_model and name in guide_trace.nodes):
                names.append(name)
    return tuple(names)


def one_weight_sites(traces: tuple[poutine.Trace, ...], batch: int) -> frozenset[str]:
    """The sample sites of ``traces`` none of whose plates has ``batch`` elements, observed ones too: each makes
    :class:`~hybridpgm.infer.IWAE`'s bound one importance weight for the whole batch (a site outside every plate,
    or in a plate of its own; :func:`~hybridpgm.infer.iwae.importance_log_weights`), a ``pyro.factor`` or a
    likelihood ``.to_event`` over the rows outside the data plate as much as a global latent.

    :param traces: a guide trace and a model trace (probe traces of one batch).
    :param int batch: :math:`B`, the batch's number of examples."""
    return frozenset(name for trace in traces for name, site in trace.nodes.items()
                     if site["type"] == "sample" and not site_is_subsample(site)
                     and all(batch not in (_size(frame.size), _size(frame.full_size))
                             for frame in site["cond_indep_stack"]))


def refuse_unsplit_estimates(objective: Any, batch: Any, *, accumulate: int, world_size: int, name: str) -> None:
    """Raise, before ``fit`` sets the run up, the :class:`~hybridpgm.errors.ConfigError` its first step would raise
    for an estimate that does not split over micro-batches (see the module docstring); else nothing, and without a
    probe where no refusal is possible.

    :param objective: has ``model``, ``guide``, ``elbo``, ``model_kwargs``, ``module`` and ``per_example``.
    :param batch: the first batch of ``fit`` (a tensor, or a tuple of the programs' positional arguments).
    :param int accumulate: ``fit``'s micro-batches per batch.
    :param int world_size: the ranks.
    :param str name: the objective's name for the message (``"SVIObjective"``).
    :raises ConfigError: the step's refusal, with its message."""
    elbo = getattr(objective, "elbo", None)
    joint, enumerating = isinstance(elbo, IWAE), isinstance(elbo, (TraceEnum_ELBO, TraceTMC_ELBO))
    if not objective.per_example or not (joint or enumerating) or (accumulate == 1 and world_size == 1):
        return
    micro, weight = split_batch(batch, accumulate)[0]
    share = weight / world_size  # the first micro-batch's: micro_batch_share() at step 1
    if share == 1.0:
        return  # a batch of one row on one process: never split
    args = tuple(micro) if isinstance(micro, (tuple, list)) else (micro,)
    size = batch_size_of(micro)
    weighted = _SelfWeighted()
    try:
        with probing(objective.model, objective.guide, objective.module), torch.no_grad(), poutine.block(), \
                weighted:
            guide_trace = poutine.trace(objective.guide).get_trace(*args, **objective.model_kwargs)
            model_trace = poutine.trace(poutine.replay(objective.model, trace=guide_trace)).get_trace(
                *args, **objective.model_kwargs)
    except Exception:  # noqa: BLE001 - the step runs the same programs and raises their error with its context
        return
    traces = (guide_trace, model_trace)
    if scaled_batch_plate((("model", model_trace), ("guide", guide_trace)), size) is not None:
        return  # the step's probe refuses the subsampled plate first, with its own message

    def doubled():  # a global site of B elements too (the step's probe tells it so)
        return probe_doubled(objective.model, objective.guide, args, objective.model_kwargs, size,
                             (objective.module,))

    if joint:  # the step refuses the global sites it scales: those of a plate of B elements that keeps its size too
        weights = one_weight_sites(traces, size) | sites_outside_batch_plates(traces, size, doubled)
        if weights:
            observed = any(trace.nodes[site]["is_observed"] for trace in traces for site in weights
                           if site in trace.nodes)
            refuse_joint_weights(GlobalShare(weights, share), name, "IWAE",
                                 kind="site(s)" if observed else "latent site(s)")
        return
    enumerated = enumerated_sites(*traces)
    if not enumerated:
        return
    sites = sites_outside_batch_plates(traces, size, doubled)
    for site in enumerated:  # the first the step would meet
        if site in sites and site not in weighted.names:
            raise enumerated_site_error(site, share)
