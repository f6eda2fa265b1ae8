"""A cheap test, before any inference runs, that the evidence of an MRF's model has probability zero.

The exact queries know a model's evidence has probability zero from its :math:`\\log Z_e = -\\infty`
(:func:`~hybridpgm.infer.mrf_possible._check_possible`).  Loopy BP, mean field and Gibbs sampling never form it,
yet must refuse the same evidence with the same :class:`~hybridpgm.errors.EvidenceError` (an argmax over a row of
``-inf`` logits picked state 0, a state the evidence forbids; BP's marginals answered the row).  They use the bound

.. math::

    s(x) \\le u_v(x_v) + \\sum_{f \\not\\ni v} \\max_{x_f \\sim e} \\theta_f(x_f), \\qquad
    u_v(k) = \\theta_v(k) + \\sum_{f \\ni v} \\max_{x_f \\sim e,\\ x_v = k} \\theta_f(x_f),

(:math:`x \\sim e`: the states the evidence allows): where every allowed state :math:`k` of one variable :math:`v`
has :math:`u_v(k) = -\\infty` (``-inf`` unaries, or penalties of ``finfo.min`` summing past the dtype's range, the
library's "probability zero", docs/markov_nets.md), every assignment scores :math:`-\\infty` and
:math:`\\log Z_e = -\\infty`.  One pass over the tables (one masked maximum per factor and position, :math:`O(B
\\sum_f k_f C^{k_f})`), no host read of its own: it joins the caller's one check.  It is sufficient, not
necessary: impossibility that shows only through a chain of factors (a constraint propagated over several
variables: :math:`x_0 = x_1 = x_2 = x_3` with :math:`x_0 = 0, x_3 = 1`, where every state of every variable has a
finite bound) is left to the method's own signal (BP's :math:`-\\infty` Bethe estimate, Gibbs' per-step flag).

Such a chain is found by iterating the bound (:func:`propagated_impossible_rows`): a state whose bound is
:math:`-\\infty` is ruled out as the evidence rules states out (every assignment using it scores :math:`-\\infty`),
and the bound is taken again over the states left, until no state goes (arc consistency on the factors' supports;
exact on trees, sufficient on loopy graphs).  That takes one pass and one host read per ruled-out state at most,
as many as the chain is long, so it is not run before the iterations: BP and mean field run it on their error path
only, where NaN messages or a field with no finite state would have raised their
:class:`~hybridpgm.errors.ModelSpecError`, and raise :class:`~hybridpgm.errors.EvidenceError` naming the evidence
where it finds the evidence impossible (:func:`impossible_evidence_error`).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_centring import group_states
from hybridpgm.infer.mrf_possible import _check_possible, impossible_error
from hybridpgm.infer.vmap_rows import all_rows
from hybridpgm.transform_scope import under_vmap

__all__: list = []


def impossible_rows(fg: FactorGraph) -> torch.Tensor:
    """``[B]`` bool: the models in which some variable has no allowed state :math:`k` of finite bound
    :math:`u_v(k)` (the module docstring), so that every assignment scores :math:`-\\infty`."""
    return (_bound(fg) == -math.inf).all(-1).any(-1)


def _bound(fg: FactorGraph) -> torch.Tensor:
    """``[B, V, C]`` the bound :math:`u_v(k)` of the module docstring over the states ``fg.valid`` allows
    (:math:`-\\infty` at the others)."""
    with torch.no_grad():
        bound = fg.masked_unary().detach()  # [B, V, C], -inf at the states the evidence rules out and padding
        for g in fg.groups:
            t = g.log_potentials.detach()
            t = torch.where(group_states(fg, g.variables), t, torch.full((), -math.inf, dtype=t.dtype,
                                                                         device=t.device))  # [B, F] + [C] * k
            for j in range(g.arity):
                others = [2 + i for i in range(g.arity) if i != j]
                best = t.amax(dim=others) if others else t  # [B, F, C]: the best entry with x_v = k
                bound = bound.index_add(1, g.variables[:, j].to(bound.device), best)
        return bound


def propagated_impossible_rows(fg: FactorGraph, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` bool: :func:`impossible_rows` with the states of :math:`-\\infty` bound ruled out, pass after pass,
    until none goes (the module docstring): finds impossibility that shows only through a chain of factors.  One
    host read per pass, at most one pass per state: for error paths.

    :param valid: ``[B, V, C]`` the states allowed at the start (default ``fg.valid``: the evidence's)."""
    valid = (fg.valid if valid is None else valid).to(fg.unary.device)
    while True:
        kept = valid & (_bound(dataclasses.replace(fg, valid=valid)) > -math.inf)
        if torch.equal(kept, valid):
            return ~kept.any(-1).all(-1)
        valid = kept


def impossible_evidence_error(fg: FactorGraph, query: str) -> EvidenceError | None:
    """The :class:`~hybridpgm.errors.EvidenceError` of the exact queries, prefixed ``query``, naming the models of
    ``fg`` that :func:`propagated_impossible_rows` finds impossible given their evidence and not without it, or
    ``None``: none found, or under :func:`torch.func.vmap` (whose batched rows it cannot read pass by pass).  A
    model found impossible without any evidence is the tables' fault, not the evidence's: the caller's
    :class:`~hybridpgm.errors.ModelSpecError` says so.  For the error paths of BP and mean field, which call it
    before building that error."""
    if under_vmap():
        return None
    impossible = propagated_impossible_rows(fg)
    if not bool(impossible.any()):
        return None
    states = torch.arange(fg.num_states, device=fg.unary.device) < fg.cardinalities.to(fg.unary.device)[:, None]
    impossible = impossible & ~propagated_impossible_rows(fg, states.expand(fg.valid.shape))
    return impossible_error(fg, impossible, query) if bool(impossible.any()) else None


def check_possible(fg: FactorGraph, query: str, score: torch.Tensor | None = None) -> None:
    """Raise :class:`~hybridpgm.errors.EvidenceError` naming the models whose evidence has probability zero by
    :func:`impossible_rows`, or whose ``score`` (``[B]``, a method's own :math:`\\log Z` estimate, ``-inf`` where it
    found the evidence impossible) is :math:`-\\infty`: the message of the exact queries
    (:func:`~hybridpgm.infer.mrf_possible._check_possible`), one host read for the whole batch, deferred inside
    :func:`~hybridpgm.fit`'s step.  Under :func:`torch.func.vmap` every row of the ``vmap`` is read at once
    (:func:`~hybridpgm.infer.vmap_rows.all_rows`) and the error names the first bad one."""
    impossible = impossible_rows(fg)
    if score is not None:
        impossible = impossible | (score.detach() == -math.inf)
    if under_vmap():
        rows = all_rows(impossible)  # [R, B] (R = 1 where the evidence and tables are batched at no vmap level)
        with torch._C._DisableFuncTorch():
            hits = rows.nonzero()
            if hits.shape[0]:
                r, b = hits[0].tolist()
                where = f" in row {r} of the vmap" if rows.shape[0] > 1 else ""
                raise EvidenceError(f"{query}: the evidence of model {b}{where} has probability zero: every "
                                    f"assignment it allows scores -inf")
        return
    _check_possible(fg, torch.where(impossible, -math.inf, 0.0), query)
