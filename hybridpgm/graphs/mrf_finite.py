"""The check that a MarkovNet's tables are finite, for all its families in one host read.

A table declared by a tensor (a buffer or parameter) is checked when declared, but can turn NaN or infinite
afterwards (a diverged training step, an in-place edit), and a neural potential's table is new on every call, so
:meth:`MarkovNet.tables <hybridpgm.graphs.MarkovNet.tables>` checks both on every use.  One read per family would
be one device-host synchronisation per family and query on CUDA; :func:`check_finite_tables` stacks the families'
flags and reads them once, or, inside :func:`~hybridpgm.fit`'s step, defers them to the step's read
(:func:`~hybridpgm.train.deferred_checks.check_or_defer`).  Only a failure reads again, to name the first bad
family.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["check_finite_tables"]


def _message(name: str) -> str:
    return f"MarkovNet: factor {name!r} has non-finite log-potentials (NaN or inf)"


def _first_failure(names: Sequence[str], flags: torch.Tensor) -> ModelSpecError:
    """The error naming the first of ``names`` whose flag (``[F]`` bool, true: finite) is false (error path)."""
    return ModelSpecError(_message(names[int(flags.logical_not().nonzero()[0, 0])]))


def check_finite_tables(tables: Sequence[tuple[str, torch.Tensor]]) -> None:
    """Refuse tables (stored or neural) holding NaN or an infinity, naming the first such family in ``tables``'
    order.

    Inside :func:`torch.jit.trace` each family keeps a check of its own, so that the compiled function's error
    names the family (:func:`~hybridpgm.train.traced_checks.assert_in_trace`).

    :param tables: ``(family name, table)`` pairs, in the network's family order.
    :raises ModelSpecError: naming the first family whose table is not finite.
    """
    if len(tables) == 1 or torch.jit.is_tracing():
        for name, t in tables:
            check_or_defer(torch.isfinite(t).all(), functools.partial(ModelSpecError, _message(name)),
                           _message(name), ModelSpecError, about_data=False)
        return
    if not tables:
        return
    device = tables[0][1].device
    flags = torch.stack([torch.isfinite(t).all().to(device) for _, t in tables])
    check_or_defer(flags.all(), functools.partial(_first_failure, [name for name, _ in tables], flags),
                   "MarkovNet: a factor has non-finite log-potentials (NaN or inf)", ModelSpecError,
                   about_data=False)
