"""The log-space and max-sum contractions of an MRF, on max-shifted operands and renormalised steps.

Log space is where the exact queries of :mod:`hybridpgm.infer.mrf_exact` go when probability space cannot hold
a model (a shifted partition sum under :func:`~hybridpgm.infer.mrf_operands.probability_floor`, or more joint
states than float64's range), for every MAP (the max-sum semiring) and for the dtypes without a probability
space.  Used as they are, the log-potentials make every intermediate carry the running sum of the scores, of
the order of (factors) x (score): a float32 chain of 2000 factors near 1000 holds entries near :math:`2 \\cdot
10^6`, rounded to 0.25, so its :math:`\\log Z` came out 49 nats off and its MAP 0.63 below the best; a
frustrated ring of 30 factors of 5000 lost a unary of 0.01 (:math:`p(x_0 = 1)` 0.5007 for 0.5025).  So, as
probability space does (:func:`~hybridpgm.infer.mrf_operands._prob_operands`):

* each operand :math:`\\theta_{b,f}` of the plan is contracted as :math:`\\theta_{b,f} - m_{b,f}`,
  :math:`m_{b,f}` its maximum over its finite entries (held constant, 0 where none is finite) for each model
  :math:`b` (:func:`_log_operands`);
* each step's output is less its per-model maximum (:class:`~hybridpgm.graphs.row_shifts.RowShifts`), below
  float64 (whose 53 bits keep a running sum of :math:`10^6` to :math:`10^{-10}`: the steps' extra kernels, 6-31%
  of a query in float32, are not spent there);

and :math:`\\log Z_b` (or the MAP score) is the contraction plus the sum of all the maxima, summed in float64 and
rounded once to the model's dtype.  The shifts are constants, so the gradients (marginals, MAP back-tracking) are
those of the unshifted contraction.
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.row_shifts import RowShifts
from hybridpgm.infer.mrf_plan import _Structure

__all__ = ["log_space_contract"]


def _finite_max(t: torch.Tensor, first: int) -> torch.Tensor:
    """The detached maximum of ``t`` over its dims ``first, first + 1, ...``, 0 where no entry is finite."""
    return t.detach().amax(dim=tuple(range(first, t.dim()))).nan_to_num(0.0, 0.0, 0.0)


def _log_operands(st: _Structure, stacks: list, alone: list) -> tuple[list, torch.Tensor | float]:
    """``(operands, shift)``: the plan's log-space operands (:func:`~hybridpgm.infer.mrf_operands._operands`),
    each less its per-model maximum, and ``[B]`` float64 the sum of those maxima.  A stack without padding is
    shifted whole (``[B, F]`` maxima); a padded one factor by factor, after cropping (padding is no state)."""
    ops, total = [], 0.0
    for t, crop in zip(stacks, st.crop):
        if crop is None:
            m = _finite_max(t, 2)  # [B, F]
            ops += (t - m.reshape(m.shape + (1,) * (t.dim() - 2))).unbind(1)
            total = total + m.to(torch.float64).sum(1)
            continue
        for x, c in zip(t.unbind(1), crop):
            x = x[(slice(None),) + c]
            m = _finite_max(x, 1)
            ops.append(x - m.reshape(m.shape + (1,) * (x.dim() - 1)))
            total = total + m.to(torch.float64)
    for x in alone:
        m = _finite_max(x, 1)
        ops.append(x - m[:, None])
        total = total + m.to(torch.float64)
    return ops, total


def log_space_contract(st: _Structure, stacks: list, alone: list, semiring: str) -> torch.Tensor:
    """``[B]`` :math:`\\log Z_b` (``semiring="log"``) or the MAP score (``"max"``) of the folded potentials
    (:func:`~hybridpgm.infer.mrf_operands._folded`), in their dtype: the contraction of :func:`_log_operands` with
    renormalised steps, the maxima added back in float64.  Differentiable as the plain contraction is.

    :param st: the model's cached structure (its plan).
    :param stacks: the groups' folded log-potentials ``[B, F_g] + [C] * k``.
    :param alone: the lone variables' unaries ``[B, |v|]``.
    :param str semiring: ``"log"`` or ``"max"``.
    """
    ops, shift = _log_operands(st, stacks, alone)
    if ops and ops[0].dtype == torch.float64:  # a running sum of 1e6 keeps 1e-10 there: no per-step renormalising
        value = st.plan(ops, semiring)
        return (value.to(torch.float64) + shift).reshape(value.shape)
    with RowShifts(st.plan) as rows:
        value = st.plan(ops, semiring)
    return rows.added(value, shift)
