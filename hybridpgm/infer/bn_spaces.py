"""Probability space or log space for an exact Bayesian-network query, and rows scaled or redone to stay exact.

A query contracts the factors :math:`\\phi_f` of :mod:`hybridpgm.infer.bn_factors` to
:math:`Z_n = \\sum_x \\prod_f \\phi_f(x_f; e_n)`, one value per evidence row :math:`n`
(:mod:`hybridpgm.infer.bn_contract`).  In probability space (the dtypes of :data:`PROBABILITY_FLOOR`) that
takes one batched matmul per step, and a row is answered there when

.. math::

    t < \\tilde Z_n < \\infty, \\qquad \\tilde Z_n = Z_n / C_n, \\qquad
    \\log Z_n = \\log \\tilde Z_n + \\log C_n,

with :math:`t` the dtype's floor and :math:`C_n` the product of the row maxima of the factors that can be
small or large, ``[N]`` tensors: in every dtype the soft-evidence likelihoods and continuous densities,
scaled in log space before they are exponentiated (:func:`~hybridpgm.infer.bn_factors.factors`,
:func:`factor_shifts`), and in float32 (:data:`SCALED_ROWS`) also the tables whose own variable was observed
(:func:`row_scaled`).  The
rows outside (:func:`rows_in_prob`) are answered again, alone, in log space (:func:`with_rows_redone`),
max-shifted as Pyro's ``torch_log`` einsum: the only space used for other dtypes (:func:`spaces_for`).
"""

from __future__ import annotations

import functools

import torch

from hybridpgm.infer.bn_evidence import BATCH, Evidence

__all__ = ["PROBABILITY_FLOOR", "SCALED_ROWS", "TINY", "factor_owners", "factor_shifts", "row_scaled",
           "rows_in_prob", "spaces_for", "use_prob", "with_rows_redone", "with_shift"]

#: the dtypes contracted in probability space, each with the evidence probability below which a row sends the
#: query to log space.  An intermediate entry that falls below the dtype's smallest normal number :math:`t`
#: (2.2e-308, 1.2e-38) loses at most :math:`t\,S` of :math:`Z_n`, :math:`S` the joint states summed over (the
#: factors are conditional probabilities, at most one, and the likelihoods and densities are scaled to a largest
#: entry of one per row, :func:`factor_shifts`), so these floors keep the relative
#: loss below the dtype's rounding for :math:`S` up to about :math:`5 \cdot 10^{15}` in float32 and
#: :math:`10^{41}` in float64 (a loose bound).  Float32 rows whose row-scaled evidence (:func:`row_scaled`)
#: stays under :math:`10^{-15}` (evidence that conflicts across many nodes) are answered in log space, the others
#: of their batch stay in probability space.
PROBABILITY_FLOOR = {torch.float64: 1e-250, torch.float32: 1e-15}

#: the dtypes whose probability-space tables that can be small are scaled row by row before a contraction
#: (:func:`row_scaled`): float32, whose narrow range would otherwise send rows of heavy evidence (half the nodes of
#: hailfinder or barley observed) to log space; float64's floor leaves 58 orders of magnitude, and the scaling's
#: few small operations per factor would show on its smallest networks.  Soft-evidence likelihoods and continuous
#: densities are scaled in every dtype (:func:`factor_shifts`): their range is unbounded
SCALED_ROWS = frozenset({torch.float32})

#: float64's floor (:data:`PROBABILITY_FLOOR`)
TINY = PROBABILITY_FLOOR[torch.float64]


def use_prob(ev: Evidence) -> bool:
    """Probability space (one batched matmul per step) for the dtypes of :data:`PROBABILITY_FLOOR`, where it is
    accurate enough and 2-5 times cheaper than log space (a log-sum-exp per step); log space otherwise."""
    return ev.dtype in PROBABILITY_FLOOR


def spaces_for(ev: Evidence) -> tuple:
    """The spaces a query tries in order: probability space where the dtype allows (:func:`use_prob`), then log
    space for the rows it cannot answer."""
    return ("prob", "log") if use_prob(ev) else ("log",)


def rows_in_prob(z: torch.Tensor, ev: Evidence) -> torch.Tensor:
    """``[N]`` bool: the rows whose probability-space evidence ``z`` is above the dtype's floor and finite (soft
    evidence may exceed one); the others are answered again in log space."""
    z = z.detach()
    return (z > PROBABILITY_FLOOR[ev.dtype]) & (z < float("inf"))


def row_scaled(tensors, dims, ev: Evidence, owners) -> tuple[list, torch.Tensor | float]:
    """Probability-space factors, in the dtypes of :data:`SCALED_ROWS` with every row-carrying factor that can be
    small divided, row by row, by its largest entry; and ``[N]`` :math:`\\log C_n`, the sum of the logs of those
    maxima (``0.0`` when nothing was scaled).

    :math:`Z_n` is multilinear in the factors, so the scaled contraction is :math:`\\tilde Z_n = Z_n / C_n`:
    marginals (ratios within a row) are unchanged, and so are their gradients and those of
    :math:`\\log \\tilde Z_n` in the unscaled factors while :math:`C_n` is held constant (it is detached), so
    :math:`\\log Z_n = \\log \\tilde Z_n + \\log C_n` keeps its gradient.  Evidence of low probability mostly
    enters through the small table entries that indexing picks for the observed nodes; scaled, the row's
    :math:`\\tilde Z_n` stays far above :data:`PROBABILITY_FLOOR`.  Only those factors are scaled (a node's table
    whose own variable was indexed away), with soft-evidence likelihoods and continuous densities: a table that
    still holds its own variable :math:`v` has a largest entry of at least :math:`1/|v|` in every row, and a
    hard-evidence indicator one of exactly one.  A factor that is zero in a row stays zero there (its maximum is
    clamped to the dtype's smallest normal number).

    :param owners: the node each factor belongs to (its table, or its likelihood), in the order of ``tensors``.
    """
    if ev.dtype not in SCALED_ROWS:
        return list(tensors), 0.0
    tiny = torch.finfo(ev.dtype).tiny
    out, maxima = [], []
    for t, d, v in zip(tensors, dims, owners):
        if d and d[0] == BATCH and (v not in d or v in ev.soft):
            c = t.detach().reshape(t.shape[0], -1).amax(-1).clamp_min_(tiny)
            t = t / c.reshape(-1, *([1] * (t.dim() - 1)))
            maxima.append(c)
        out.append(t)
    return out, (torch.stack(maxima).log().sum(0) if maxima else 0.0)


def factor_shifts(tensors) -> torch.Tensor | float:
    """``[N]`` :math:`\\sum_f c_{f,n}`: the row maxima that :func:`~hybridpgm.infer.bn_factors.factors` took out of
    the soft-evidence likelihoods and continuous densities in log space, in every dtype (``log_scale`` of its
    :class:`~hybridpgm.infer.bn_factors.ScaledFactors`; ``0.0`` when none), in the widest dtype among them (a
    likelihood's is that of its working precision, :func:`~hybridpgm.infer.soft_evidence.working_dtype`).  With
    :func:`row_scaled`'s maxima, :math:`\\log C_n` = that sum plus its ``[N]`` logs."""
    shifts = list(getattr(tensors, "log_scale", ()))
    if not shifts:
        return 0.0
    wide = functools.reduce(torch.promote_types, (c.dtype for c in shifts))
    return torch.stack([c.to(wide) for c in shifts]).sum(0)


def with_shift(log_z: torch.Tensor, shift, dtype: torch.dtype) -> torch.Tensor:
    """``log_z + shift`` in ``dtype``: :math:`\\log Z_n = \\log \\tilde Z_n + \\sum_f c_{f,n}` for the ``[N]``
    ``log_z`` of a scaled contraction and the ``shift`` of :func:`factor_shifts`.  The sum is taken in the wider
    of the two dtypes and rounded once to ``dtype`` (a float16 network's :math:`\\log p(e)` of -460.9 is its
    nearest float16, not -460.9 rounded twice); the gradient reaches ``log_z`` (``shift`` is detached)."""
    if not isinstance(shift, torch.Tensor):
        return log_z if shift == 0.0 else log_z + shift
    return (log_z + shift).to(dtype)


def factor_owners(facts, ev: Evidence, keep) -> list:
    """The node each factor of :func:`~hybridpgm.infer.bn_factors.factors` belongs to, in its order: the kept
    nodes' tables, then the likelihoods of the nodes with partial (or soft) evidence."""
    return [v for v in facts.nodes if v in keep] + [v for v in ev.partial if v in keep]


def with_rows_redone(prob_out, ok: torch.Tensor, ev: Evidence, row_ids, redo):
    """``prob_out`` (a tensor or a list of tensors, rows first) with the rows not ``ok`` replaced by
    ``redo(sub_evidence, sub_row_ids)``: their answers in log space.  Out of place, so still differentiable."""
    bad = (~ok).nonzero().flatten()
    ids = torch.arange(ev.n, device=ok.device) if row_ids is None else row_ids
    again = redo(ev.subset(bad), ids[bad])
    if isinstance(prob_out, torch.Tensor):
        return prob_out.index_copy(0, bad, again)
    return [o.index_copy(0, bad, a) for o, a in zip(prob_out, again)]
