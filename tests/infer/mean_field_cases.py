"""The full-recomputation reference of :class:`~hybridpgm.infer.MeanField` shared by the mean-field cost tests."""

import dataclasses

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_centring import centred_graph
from hybridpgm.infer import MeanField
from hybridpgm.infer.mean_field import MeanFieldResult, _check_init
from hybridpgm.infer.rounding_floor import rounding_floor


def reference_mean_field(mf: MeanField, fg: FactorGraph, init: torch.Tensor | None = None) -> MeanFieldResult:
    """Mean field as it was before the per-colour plans: every colour step computes the field of every variable
    from every factor (:meth:`MeanField._field`) and keeps the colour's rows; the same stopping rule (the change of
    every ``check_every``-th sweep and of the last one tested), on the tables less their maxima as
    :class:`~hybridpgm.infer.MeanField` runs them (:func:`~hybridpgm.graphs.mrf_centring.centred_graph`; the
    bound, :meth:`MeanField.elbo`, centres them and adds the maxima back itself)."""
    bound_fg, fg = fg, centred_graph(fg)[0]
    theta = fg.masked_unary()
    q = torch.softmax(theta, dim=-1) if init is None else _check_init(init, fg)
    colors = fg.colors if fg.colors is not None else torch.zeros(fg.num_vars, dtype=torch.long)
    masks = [(colors == c).view(1, -1, 1) for c in range(int(colors.max()) + 1)]
    converged, it = False, 0
    for it in range(1, mf.num_iters + 1):
        q_old = q
        for mask in masks:
            new = torch.softmax(MeanField._field(fg, theta, q), dim=-1)
            if mf.damping > 0:
                new = (1 - mf.damping) * new + mf.damping * q
            q = torch.where(mask, new, q)
        if mf.tol == 0 or (it % mf.check_every and it != mf.num_iters):  # tested every check_every sweeps
            continue
        delta = float((q - q_old).detach().abs().max())
        if delta < max(mf.tol, rounding_floor(q.dtype)):
            converged = True
            break
    return MeanFieldResult(MeanField.elbo(bound_fg, q), q, converged, it)


def with_dtype(fg: FactorGraph, dtype: torch.dtype) -> FactorGraph:
    """``fg`` with its unary and factor tables in ``dtype``."""
    groups = [dataclasses.replace(g, log_potentials=g.log_potentials.to(dtype)) for g in fg.groups]
    return dataclasses.replace(fg, unary=fg.unary.to(dtype), groups=groups)


def with_leaves(fg: FactorGraph) -> tuple:
    """``(fg', leaves)``: ``fg`` with fresh leaf copies of its unary and factor tables that require grad."""
    unary = fg.unary.detach().clone().requires_grad_()
    tables = [g.log_potentials.detach().clone().requires_grad_() for g in fg.groups]
    groups = [dataclasses.replace(g, log_potentials=t) for g, t in zip(fg.groups, tables)]
    return dataclasses.replace(fg, unary=unary, groups=groups), [unary] + tables
