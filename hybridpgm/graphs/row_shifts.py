"""Each log-space or max-sum step of a contraction plan less its per-row maximum, the maxima kept in float64.

A log-space (or max-sum) contraction carries in every intermediate the running sum of the scores it has
absorbed: after :math:`n` factors of scale :math:`s` an entry is near :math:`n s`, whose unit in the last place
is about :math:`n s \\epsilon`, so every difference between scores below that is lost at each step (float32,
:math:`\\epsilon = 1.2 \\cdot 10^{-7}`: a chain of 2000 factors of scale 1000 rounds every entry to 0.25).
Within :class:`RowShifts`, the step kernels of :mod:`hybridpgm.graphs.contraction_steps`
(:func:`~hybridpgm.graphs.contraction_steps.log_einsum`, :func:`~hybridpgm.graphs.contraction_steps.max_sum`)
return each step's output :math:`y_s` of ``plan`` as

.. math:: y_s - c_s, \\qquad c_{s,r} = \\max_{o} y_s(r, o) \\text{ (held constant; 0 where no entry is finite)},

the maximum over every entry of the row :math:`r` (of the plan's one output dim; over the whole output for a
step without it), so every intermediate peaks at 0 and the next step adds small numbers.  The contraction is
:math:`v + \\sum_s c_s`, the sum taken in float64 (:meth:`RowShifts.total`).  Exact, gradients included: with a
constant :math:`c`, :math:`\\operatorname{lse}(y - c) + c = \\operatorname{lse}(y)`, :math:`\\max(y - c) + c =
\\max(y)`, and :math:`\\partial (y - c) / \\partial y = 1`.  Outside the scope (every query but the MRF's log-space
ones and backward sampling: :mod:`hybridpgm.infer.mrf_log_space`, :mod:`hybridpgm.graphs.plan_sampling`) the steps
are as they were, at the cost of one context-variable read per step.
"""

from __future__ import annotations

from contextvars import ContextVar

import torch

__all__ = ["RowShifts", "less_row_max"]

_ACTIVE: ContextVar = ContextVar("hybridpgm_row_shifts", default=None)


class RowShifts:
    """The scope in which the log-space and max-sum steps of ``plan`` subtract their per-row maxima.

    The steps are known by the identity of their layout objects (the ``shifts`` of a log-space step, the output
    dims of a max-sum step, both held by the plan's :attr:`~hybridpgm.graphs.contraction.ContractionPlan.steps`),
    so a step of another plan run inside the scope is left alone.

    :param plan: a :class:`~hybridpgm.graphs.contraction.ContractionPlan` or
        :class:`~hybridpgm.graphs.contraction.AbsorbingPlan` whose output is at most one dim (the rows).
    :raises ValueError: the plan's output has more than one dim.
    """

    def __init__(self, plan):
        if len(plan.output_dims) > 1:
            raise ValueError(f"RowShifts: the plan's output must be one row dim or none, got {plan.output_dims}")
        rows = plan.output_dims[0] if plan.output_dims else None
        self._plan = plan  # keeps the keyed objects alive, so their ids stay theirs
        self._axes = {}
        for step in plan.steps:
            out = step[2]
            axes = tuple(i for i, d in enumerate(out) if d != rows)
            self._axes[id(step[4])] = self._axes[id(out)] = axes
        self._parts: list = []
        self._token = None

    def __enter__(self) -> "RowShifts":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)

    def total(self) -> torch.Tensor | float:
        """:math:`\\sum_s c_s` in float64: ``[R]`` (``[1]`` where no step held the rows), ``0.0`` before any step."""
        if not self._parts:
            return 0.0
        by_size: dict = {}
        for c in self._parts:
            by_size.setdefault(c.numel(), []).append(c.reshape(-1))
        total = 0.0
        for group in by_size.values():  # one stack and one sum per shape, not one addition per step
            total = total + torch.stack(group).to(torch.float64).sum(0)
        return total

    def added(self, value: torch.Tensor, shift: torch.Tensor | float = 0.0) -> torch.Tensor:
        """``value + shift + total()`` summed in float64 and rounded once to ``value``'s dtype.

        :param value: the plan's output within the scope (differentiable: the sum is, in ``value``).
        :param shift: a constant added too, e.g. the ``[R]`` maxima taken out of the operands.
        """
        total = self.total()
        if isinstance(total, float) and isinstance(shift, float) and total == shift == 0.0:
            return value
        return (value.to(torch.float64) + shift + total).reshape(value.shape).to(value.dtype)


def less_row_max(result: torch.Tensor, key) -> torch.Tensor:
    """``result`` less its per-row maximum :math:`c_s` (kept by the active :class:`RowShifts`) where ``key`` is a
    step of the active scope's plan; ``result`` itself otherwise (no scope, or another plan's step).

    :param result: the step's output, laid out as the step's output dims.
    :param key: the step's ``shifts`` (a log-space step) or output dims (a max-sum step), as the plan holds them.
    """
    scope = _ACTIVE.get()
    if scope is None:
        return result
    axes = scope._axes.get(id(key))
    if axes is None:
        return result
    c = result.detach()
    if axes:
        c = c.amax(dim=axes, keepdim=True)
    c = c.nan_to_num(0.0, 0.0, 0.0)  # a row with no finite entry (impossible evidence) is left as it is
    scope._parts.append(c)
    return result - c
