"""Which optimizer update of which player :func:`hybridpgm.fit` is running, and which share of it a micro-batch is.

With ``accumulate = M``, ``fit`` calls an objective's ``loss`` once per
micro-batch, M times for one optimizer step of a player.  An objective whose
loss advances state that belongs to the step rather than to the data
(:class:`~hybridpgm.infer.PersistentCD`'s chains: ``k`` sweeps per step) asks
:func:`current_update` for a token, the same object for every micro-batch of
one update and another one for the next, and ``None`` outside ``fit``, where
each call is a step of its own.

A model that adds a term once per step rather than once per example (a
:class:`~hybridpgm.graphs.BayesNet`'s Dirichlet prior without ``num_data``) asks
:func:`micro_batch_share` for the share :math:`w_i = m_i / (B R)` of the micro-batch ``fit`` runs in the
update: ``fit`` weights its loss by :math:`m_i / B` (:math:`m_i` of the rank's :math:`B` examples of the
step) and averages the gradients over the :math:`R` ranks.  The shares of one update sum to 1 over the
micro-batches of all ranks (a batch that is not split, on one process, has share 1); ``None`` outside ``fit``.
:class:`~hybridpgm.infer.SVIObjective` and :class:`~hybridpgm.infer.NVIL` with ``per_example=True`` themselves scale
by that share every sample site outside the batch's plates (:mod:`~hybridpgm.infer.global_share`); a model that
weights such a term on its own (by the share, or by :math:`B / N`) adds it inside :func:`weighted_per_update`, and
is not scaled twice.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

__all__ = ["current_update", "micro_batch", "micro_batch_share", "one_update", "weighted_per_update",
           "weighted_per_update_active"]

_UPDATE: contextvars.ContextVar["object | None"] = contextvars.ContextVar("hybridpgm_update", default=None)
_SHARE: contextvars.ContextVar["float | None"] = contextvars.ContextVar("hybridpgm_micro_batch_share",
                                                                         default=None)
_WEIGHTED: contextvars.ContextVar[bool] = contextvars.ContextVar("hybridpgm_weighted_per_update", default=False)


def current_update() -> object | None:
    """The token of the player update ``fit`` is running (``None`` outside one)."""
    return _UPDATE.get()


@contextlib.contextmanager
def one_update() -> Iterator[object]:
    """Mark the micro-batches of one player update (``fit``'s :class:`~hybridpgm.train.player_step.Player`)."""
    token = object()
    reset = _UPDATE.set(token)
    try:
        yield token
    finally:
        _UPDATE.reset(reset)


def micro_batch_share() -> float | None:
    """The share :math:`w_i = m_i / (B R)` of the micro-batch ``fit`` is running in its player's update: the weight
    ``fit`` multiplies that micro-batch's loss by, :math:`m_i / B`, over the :math:`R` ranks whose gradients it
    averages (1.0 for a batch that is not split, on one process); ``None`` outside one."""
    return _SHARE.get()


@contextlib.contextmanager
def micro_batch(share: float) -> Iterator[float]:
    """Mark the loss computed inside as that of a micro-batch of share ``share`` (:math:`m_i / (B R)`) in its
    update (``fit``'s :class:`~hybridpgm.train.player_step.Player`, around each micro-batch's ``loss``)."""
    reset = _SHARE.set(float(share))
    try:
        yield share
    finally:
        _SHARE.reset(reset)


def weighted_per_update_active() -> bool:
    """Whether the sample sites a model adds now are inside :func:`weighted_per_update` (already weighted for
    ``fit``'s micro-batches and ranks by the model itself)."""
    return _WEIGHTED.get()


@contextlib.contextmanager
def weighted_per_update() -> Iterator[None]:
    """Mark the sample sites added inside as weighted for ``fit``'s update by the model itself (a
    :class:`~hybridpgm.graphs.BayesNet`'s Dirichlet prior: by :func:`micro_batch_share`, or by :math:`B / N` with
    ``num_data``): :class:`~hybridpgm.infer.SVIObjective` then leaves them out of the share it gives the sites
    outside the batch's plates (:class:`~hybridpgm.infer.global_share.GlobalShare`)."""
    reset = _WEIGHTED.set(True)
    try:
        yield
    finally:
        _WEIGHTED.reset(reset)
