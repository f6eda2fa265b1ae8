r"""Sites outside the batch's plates count once per optimizer update under ``fit``'s micro-batches and ranks.

:class:`~hybridpgm.infer.SVIObjective` with ``per_example=True`` divides the loss of a batch of :math:`B` examples
by :math:`B`.  A model's terms split in two kinds: those of its examples, inside the batch's plate
(``pyro.plate("data", B)``), and global ones outside every plate of the batch's size (the prior and the guide's
entropy of a global latent: the weights of a :func:`~hybridpgm.bayesian_nn.bayesianize`\ d network, the
hyper-parameters of an autoguide), :math:`G`.  On one batch the loss is :math:`(S + G) / B`.

:func:`hybridpgm.fit` with ``accumulate = M`` computes the loss of micro-batch :math:`i` (:math:`m_i` of the
:math:`B` rows) and weights it by :math:`m_i / B`; on :math:`R` ranks it averages the gradients.  Unscaled, a
global term then counts :math:`\sum_i (m_i / B) G / m_i = M G / B` per step instead of :math:`G / B`, and
:math:`G / B` instead of :math:`G / (R B)` over :math:`R` ranks: accumulation and data parallelism trained another
model, silently (a Bayesian regression's weights 0.041 away after 3 epochs).  :class:`GlobalShare` multiplies the
scale of each global site by the micro-batch's share :math:`w_i = m_i / (B R)`
(:func:`~hybridpgm.train.update_scope.micro_batch_share`), so that the step minimises

.. math:: \frac{1}{R}\sum_r \sum_i \frac{m_i}{B} \frac{S_{r,i} + w_i G}{m_i} = \frac{S + G \sum_{r,i} w_i}{R B}
          = \frac{S + G}{R B},

the loss of one unsplit batch of :math:`R B` rows, as BayesNet's Dirichlet prior does since cb93150.  A batch that
is not split, on one process, has share 1 and is left alone (no handler: the direct path of
:class:`~hybridpgm.infer.DirectTrace_ELBO` stays open).

Which sites are global is learnt from the probe trace pair that ``per_example`` already runs
(:func:`~hybridpgm.infer.subsample_scale.check_plate_scale`), by name (:func:`sites_outside_batch_plates`):
a latent site none of whose plates has the batch's size and whose value has no dimension of that size (an
observed site outside the plates is the batch's likelihood as one event, ``pyro.factor`` of a sum over the rows:
never global).  A global site in a plate that happens to have the batch's size (a
plate of 4 features and a batch of 4 rows) is taken for an example's; sites added inside
:func:`~hybridpgm.train.update_scope.weighted_per_update` are weighted by the model itself and left alone.
Pyro's :class:`~pyro.infer.TraceEnum_ELBO` needs one scale for all enumerated sites: an enumerated site is never
taken for a global one (it counts once per micro-batch, as before).
"""

from __future__ import annotations

from typing import Iterable

import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from hybridpgm.train.update_scope import weighted_per_update_active

__all__ = ["GlobalShare", "sites_outside_batch_plates"]


def sites_outside_batch_plates(traces: Iterable[poutine.Trace], batch: int) -> frozenset[str]:
    """The names of the latent sample sites of ``traces`` none of whose plates has ``batch`` elements and whose
    value has no dimension of ``batch`` elements (global sites: one term per batch, not per example).

    An observed site is never global: outside a plate it is the batch's likelihood as one event (``.to_event``
    over the rows, ``pyro.factor`` of their sum), whose share fit's weights :math:`m_i / B` already give; a latent
    with a dimension of the batch's size outside the plates (``z`` of shape ``(B, d)`` under ``.to_event(2)``) is
    the rows' too.  (Scaled by the share, either counted :math:`m_i / B` times too little.)  An enumerated site is
    left alone: Pyro's :class:`~pyro.infer.TraceEnum_ELBO` refuses enumerated sites of different scales (a raw
    ``ValueError`` beside a local enumerated site), and a discrete global latent summed out does not split over
    micro-batches anyway.

    :param traces: a guide trace and a model trace (probe traces of one batch).
    :param int batch: :math:`B`, the batch's number of examples.
    """
    names = set()
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or site["is_observed"] \
                    or (site.get("infer") or {}).get("enumerate"):
                continue  # a plate's own site; an observed one (the batch's likelihood as one event, pyro.factor)
            if all(_size(frame.size) != batch for frame in site["cond_indep_stack"]) \
                    and batch not in tuple(getattr(site["value"], "shape", ())):  # not a latent of the rows
                names.add(name)
    return frozenset(names)


def _size(size) -> int | None:
    """A plate's size as an ``int`` (a one-element tensor under the JIT), ``None`` where it has none."""
    if isinstance(size, torch.Tensor):
        return int(size.item()) if size.numel() == 1 else None
    return size


class GlobalShare(Messenger):
    """Multiply the scale of the named sample sites by ``share`` (see the module docstring); entered around the
    ELBO's call, so that it handles the model's and the guide's sites alike.

    :param names: the global sites (:func:`sites_outside_batch_plates`).
    :param float share: the micro-batch's share of the update, :math:`m_i / (B R)`.
    """

    def __init__(self, names: frozenset[str], share: float) -> None:
        super().__init__()
        self.names, self.share = names, share

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names and not weighted_per_update_active():
            msg["scale"] = self.share * msg["scale"]
