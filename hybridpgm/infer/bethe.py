"""The Bethe estimate of :math:`\\log Z` at the beliefs of loopy belief propagation.

At the factor beliefs :math:`b_f` and variable beliefs :math:`b_v` that BP's messages give, the negative Bethe
free energy [1]

.. math::

    \\log Z_{Bethe} = \\sum_f \\mathbb E_{b_f}[\\theta_f] + \\sum_v \\mathbb E_{b_v}[\\theta_v]
      + \\sum_f H(b_f) + \\sum_v (1 - d_v) H(b_v)

(:math:`d_v` the number of factors of arity :math:`\\ge 2` on :math:`v`) is exact on trees and BP's estimate of
:math:`\\log Z` on loopy graphs; :class:`~hybridpgm.infer.BeliefPropagation` computes it from the final messages,
on first access of :attr:`~hybridpgm.infer.belief_propagation.BPResult.log_z`.

**Constants.**  A constant :math:`c` added to a table (a variable's unary or a factor's) moves :math:`\\log Z` by
exactly :math:`c` and no belief at all, but a sum formed at the table's magnitude keeps only :math:`\\epsilon |c|`
of absolute precision: in float32, constants of :math:`\\pm 65536` on alternate tables of a chain (a
:math:`\\log Z` near 11) moved it by :math:`5 \\cdot 10^{-3}` and its gradient by :math:`4 \\cdot 10^{-3}`, the
derivative of :math:`\\mathbb E_{b}[\\theta] = \\sum_x b(x)\\theta(x)` holding :math:`\\theta \\, \\partial b`
terms of that size that cancel only to rounding.  So :func:`bethe_log_z` takes every table less its detached
maximum over the entries the evidence allows: the unary tables come centred
(:func:`~hybridpgm.graphs.mrf_centring.centred_unary`, which BP iterates on), each factor's energy is
:math:`\\mathbb E_{b_f}[\\theta_f - m_f] + m_f` (the belief sums to one), and the maxima are added once, at the
end.  Held constant, they leave the gradient the one of the tables as given, now formed at the centred tables'
magnitude (the chain above then gives the float32 :math:`\\log Z` and gradient of its tables without the
constants, bit for bit; constants all of one sign leave :math:`\\log Z` within a few ulps of its own size).

**References**

[1] J. S. Yedidia, W. T. Freeman, Y. Weiss, *Constructing Free-Energy Approximations and Generalized Belief
Propagation Algorithms*, 2005.
"""

from __future__ import annotations

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.mrf_centring import centred
from hybridpgm.infer.bp_engine import FlatGraph
from hybridpgm.tensor_tracking import carries_tangent

__all__ = ["bethe_log_z", "entropy_term"]


def entropy_term(p: torch.Tensor, log_p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:math:`p \\log p` where ``mask``, 0 elsewhere (:math:`0 \\log 0 = 0`), with no ``0 * -inf`` anywhere, so
    gradients stay finite.

    :param torch.Tensor p: probabilities.
    :param torch.Tensor log_p: their logarithms, the same shape.
    :param torch.Tensor mask: ``bool``, the entries that count.
    """
    return p * log_p.masked_fill(~mask, 0.0)


def bethe_log_z(fg: FactorGraph, flat: FlatGraph, theta: torch.Tensor, log_b: torch.Tensor, msgs: torch.Tensor,
                offset: torch.Tensor) -> torch.Tensor:
    """The negative Bethe free energy at the beliefs of ``msgs``, plus ``offset``: ``[B]``.

    :param FactorGraph fg: the graph, its unary tables centred (:func:`~hybridpgm.graphs.mrf_centring.centred_unary`).
    :param FlatGraph flat: the engine's structure of ``fg``.
    :param torch.Tensor theta: ``[B, V, C]`` ``fg``'s masked unary tables (``-inf`` at the states not allowed).
    :param torch.Tensor log_b: ``[B, V, C]`` normalised log beliefs of the variables.
    :param torch.Tensor msgs: ``[B, E, C]`` normalised factor-to-variable log messages in ``flat``'s edge order.
    :param torch.Tensor offset: ``[B]`` the sum :math:`M` of the unary maxima taken off, added back last (with
        the factor tables' maxima).
    """
    valid = fg.valid
    b = log_b.exp()
    deg = fg.degrees()
    # a valid state whose belief overflowed to -inf (two finfo.min penalties on it, or one less a huge maximum) has
    # b = 0: 0 log 0 = 0 and no 0 * (-inf) energy there
    counted = valid & ~torch.isneginf(log_b)
    unary = fg.unary.masked_fill(~counted, 0.0)
    ent_v = -entropy_term(b, log_b, counted).sum(-1)  # [B, V]
    log_z = (b * unary).sum((-1, -2)) + ((1.0 - deg) * ent_v).sum(-1)
    incoming = flat.incoming(flat.beliefs(theta, msgs), msgs)
    for scores, table in flat.factor_scores(incoming):
        graph = torch.is_grad_enabled() and (scores.requires_grad or table.requires_grad)
        # in place only where the products keep the dtype they have out of place (a table narrower than the
        # unary, in a graph built by hand, is multiplied in the scores' dtype)
        in_place = not (graph or carries_tangent(scores) or carries_tangent(table)) and table.dtype == scores.dtype
        energy, ent_f, m = (_factor_terms_in_place if in_place else _factor_terms)(scores, table)
        log_z = log_z + (energy + ent_f).sum(-1)
        offset = offset + m.sum(-1)
    return log_z + offset


def _factor_terms(scores: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(energy, entropy, m)``, each ``[B, F]``: a group's :math:`\\mathbb E_{b_f}[\\theta_f - m_f]`,
    :math:`H(b_f)` and maxima :math:`m_f`, from its log factor beliefs ``scores [B, F, C**k]`` (unnormalised) and
    tables as given ``table [B, F, C**k]``."""
    log_bf = torch.log_softmax(scores, dim=-1)
    bf = log_bf.exp()
    allowed = torch.isfinite(scores)
    table, m = centred(table, 1, allowed)  # E_bf[table] = E_bf[table - m] + m: m added with the offset
    energy = (bf * table.masked_fill(~allowed | torch.isneginf(log_bf), 0.0)).sum(-1)  # b_f = 0: no 0 * (-inf)
    ent_f = -entropy_term(bf, log_bf, allowed).sum(-1)
    return energy, ent_f, m


def _factor_terms_in_place(scores: torch.Tensor,
                           table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_factor_terms` where nothing requires grad or carries a forward-mode tangent and the tables have the
    scores' dtype: the same operations on the same numbers (bit for bit), with at most three table-sized tensors
    alive at once instead of six: the beliefs :math:`b_f` overwrite ``scores`` (a fresh tensor of
    :meth:`~hybridpgm.infer.bp_engine.FlatGraph.factor_scores`), the entropy's products overwrite
    :math:`\\log b_f`, freed before the centred table is formed, whose products then overwrite it (a
    table of a dtype :func:`~hybridpgm.graphs.mrf_centring.centred` leaves as it is, is copied)."""
    allowed = torch.isfinite(scores)
    log_bf = torch.log_softmax(scores, dim=-1)
    bf = torch.exp(log_bf, out=scores)
    no_energy = ~allowed | torch.isneginf(log_bf)  # b_f = 0: no 0 * (-inf)
    ent_f = -log_bf.masked_fill_(~allowed, 0.0).mul_(bf).sum(-1)  # entropy_term: p * log p, 0 log 0 = 0
    del log_bf
    centred_table, m = centred(table, 1, allowed)  # E_bf[table] = E_bf[table - m] + m: m added with the offset
    # a table of a dtype not centred comes back as it is: the caller's, filled out of place
    fill = centred_table.masked_fill if centred_table is table else centred_table.masked_fill_
    energy = fill(no_energy, 0.0).mul_(bf).sum(-1)
    return energy, ent_f, m
