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
(:func:`~hybridpgm.infer.subsample_scale.check_plate_scale`), by name (:func:`sites_outside_batch_plates`): a site
none of whose plates has the batch's size.  A global site in a plate that happens to have the batch's size (a
plate of 4 features and a batch of 4 rows) is taken for an example's; sites added inside
:func:`~hybridpgm.train.update_scope.weighted_per_update` are weighted by the model itself and left alone.
Pyro's :class:`~pyro.infer.TraceEnum_ELBO` needs one scale for all enumerated sites: a global enumerated site
besides local ones is refused by Pyro under a share other than 1.
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
    """The names of the sample sites of ``traces`` none of whose plates has ``batch`` elements (global sites: one
    term per batch, not per example).

    :param traces: a guide trace and a model trace (probe traces of one batch).
    :param int batch: :math:`B`, the batch's number of examples.
    """
    names = set()
    for trace in traces:
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):  # a plate's own site
                continue
            if all(_size(frame.size) != batch for frame in site["cond_indep_stack"]):
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
