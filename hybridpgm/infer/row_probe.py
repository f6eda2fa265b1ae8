r"""Tell a latent of the rows from a global latent that happens to have as many elements as the batch has rows.

:func:`~hybridpgm.infer.global_share.sites_outside_batch_plates` takes a latent site for the rows' when one of its
plates, or a dimension of its value, has the batch's :math:`B` elements.  A global latent of :math:`B` elements
(``w`` of shape ``[3]`` on a micro-batch of 3 rows of ``fit(accumulate=3)`` on a batch of 8; a plate of 3 features)
meets that rule by coincidence: taken for the rows', it was not scaled by the micro-batch's share and counted once
per micro-batch, silently (a Bayesian regression 0.080 away from ``accumulate=1`` after 3 epochs).

A second probe tells them apart: the same programs run on the batch with its rows twice over (:func:`doubled_rows`,
:math:`2B` rows).  A latent of the rows follows them: its value's shape or its plates' sizes change.  A global
latent does not: a site that the size rule takes for the rows' and that keeps its value's shape and its plates
(:func:`~hybridpgm.infer.global_share.site_layout`) on :math:`2B` rows is global.  (A site in one probe only, a
program that fails on :math:`2B` rows: the size rule stands.)  The second probe runs once per objective (its first
probe), and only where a site meets the size rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Iterable

import pyro.poutine as poutine
import torch

from hybridpgm.infer.particle_probe import probing
from hybridpgm.train.batches import _is_field, _like_mapping, _like_sequence

__all__ = ["doubled_rows", "probe_doubled"]


def doubled_rows(batch: Any, rows: int) -> Any:
    """The batch of ``rows`` examples with each example twice (:math:`2B` rows), leaf for leaf as
    :func:`~hybridpgm.train.micro_batches.split_batch` splits it: each tensor of one dimension or more concatenated
    with itself along its first, each list of ``rows`` non-tensor values likewise; other leaves (scalars, 0-d
    tensors, ``None``, strings, a list of another length) unchanged; tuples, named tuples, lists and mappings keep
    their type.

    :param batch: the programs' positional arguments (a tuple), or any part of them.
    :param int rows: :math:`B`."""
    if isinstance(batch, torch.Tensor):
        return torch.cat([batch, batch]) if batch.dim() > 0 else batch
    if _is_field(batch):
        return batch + batch if len(batch) == rows else batch
    if isinstance(batch, Mapping):
        return _like_mapping(batch, {k: doubled_rows(v, rows) for k, v in batch.items()})
    if isinstance(batch, (tuple, list)):
        return _like_sequence(batch, [doubled_rows(b, rows) for b in batch])
    return batch


def probe_doubled(model: Callable, guide: Callable, args: tuple, kwargs: dict, rows: int,
                  modules: Iterable[torch.nn.Module] = ()) -> tuple[poutine.Trace, ...] | None:
    """A guide trace and the model replayed on it on :func:`doubled_rows` of ``args``, run as
    :func:`~hybridpgm.infer.subsample_scale.check_plate_scale` runs its probe (:func:`probing`: no random numbers
    used up, no module buffer changed; no gradients, no handler of the caller sees a site).

    :returns: ``(guide_trace, model_trace)``, or ``None`` where the programs fail on :math:`2B` rows."""
    doubled = doubled_rows(args, rows)
    try:
        with probing(model, guide, *modules), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*doubled, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*doubled, **kwargs)
    except Exception:  # noqa: BLE001 - a program that cannot run on 2B rows: the size rule stands
        return None
    return guide_trace, model_trace
