"""Factor tables less their maxima: answers of an MRF that a constant added to a table leaves unchanged.

Adding a constant :math:`c_f` to every entry of a factor's table :math:`\\theta_f` multiplies every
:math:`e^{s(x)}` by :math:`e^{c_f}`, so :math:`\\log Z` moves by :math:`c_f` and the score of every assignment too,
while :math:`\\log p(x) = s(x) - \\log Z`, the marginals and the entropy do not move at all.  In floating point they
do, unless the computation keeps the constant out: a difference of two numbers of the size of
:math:`\\sum_f |c_f|` keeps only :math:`\\epsilon \\sum_f |c_f|` of absolute precision (float32 tables near 4096
lost :math:`10^{-3}` nats of an entropy, 65536 all of it).  So the queries below run on the centred tables

.. math::

    \\tilde\\theta_f = \\theta_f - m_f, \\qquad m_f = \\max_{x_f\\ \\mathrm{finite}} \\theta_f(x_f),

one :math:`m_f` per model and factor (unary sums per model and variable), the maximum over the entries of the
variables' states that the evidence allows (a padding state's entry, 0, is not one, nor an entry of a state the
evidence rules out, which would otherwise move the allowed entries to its magnitude) that are finite, 0
where none is; :math:`m_f` is held constant (detached): :math:`\\tilde\\theta_f` has the gradient of
:math:`\\theta_f`, and every quantity above is unchanged in exact arithmetic (:math:`\\log Z` and scores move by
:math:`M = \\sum_f m_f`, returned).  Float32 and float64 tables are centred in their dtype; under autocast the
tables are centred in the float32 the exact queries run in (:class:`~hybridpgm.precision_scope.exact_precision`).

A half-precision table (a model cast with ``.to(torch.float16)`` or ``.to(torch.bfloat16)``, whose queries run in
that dtype) is centred in float32 and rounded once back, where its entries (those the maximum is over) are all of
one sign: its largest magnitude then shrinks from :math:`\\max |\\theta_f|` to the table's range, and BP's
messages and mean field's fields are no longer formed at a constant's size, where float16's spacing is 0.5 at 1000
and bfloat16's at 64 (marginals were off by up to 0.2 for BP and 0.9 for mean field; now within the rounding of the
tables without the constant).  A table whose entries straddle 0 is left as it is (:math:`m_f = 0`): its range
exceeds its largest magnitude, up to twice it, and its entries would round at the larger size (bfloat16 mean-field
marginals of tables near 0 were then off by 1.0e-2 instead of 5.4e-3).  The entries the maximum is over stay
in the dtype's range; one it is not over (a state the evidence rules out, padding) that the difference takes past
it stays finite, at the dtype's largest value of its sign (never infinite, which a zero probability would make NaN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.precision_scope import exact_precision

__all__ = ["centred", "centred_graph", "centred_tables", "centred_unary", "group_states"]

#: the dtypes whose tables are centred in their own dtype
_CENTRED_DTYPES = (torch.float32, torch.float64)
#: the half-precision dtypes, whose tables are centred in float32 and cast back, an entry that the difference takes
#: past the dtype's range kept at its largest finite value
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def centred(table: torch.Tensor, k: int, states: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(table - m, m)``: ``table`` less its detached maximum ``m`` over the last ``k`` dims.

    :param torch.Tensor table: ``batch + [F] + entries`` (``k`` entry dims).
    :param int k: the number of entry dims.
    :param states: ``bool`` broadcasting with ``table``: the entries the maximum is over (``None``: all); it is
        also over finite entries only, and 0 where none is (no table entry moves to ``-inf`` or NaN).
    :returns: the centred table (``table`` itself for a dtype not centred) and ``m``, ``table.shape[:-k]``; a
        float16 or bfloat16 table is centred in float32 and rounded back, and only where its entries share a sign
        (``m`` is 0 elsewhere; see the module docstring).
    """
    if table.dtype in _HALF_DTYPES:
        return _centred_half(table, k, states)
    if table.dtype not in _CENTRED_DTYPES:
        return table, table.new_zeros(table.shape[:-k])
    m = _maxima(table.detach(), k, states)
    return table - m.reshape(m.shape + (1,) * k), m


def _kept(t: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
    """The entries the maxima of :func:`centred` are over: finite ones of ``states``."""
    return torch.isfinite(t) if states is None else torch.isfinite(t) & states


def _maxima(t: torch.Tensor, k: int, states: torch.Tensor | None) -> torch.Tensor:
    """``t.shape[:-k]``: the maxima of :func:`centred` (over finite entries of ``states``, 0 where none is)."""
    m = t.masked_fill(~_kept(t, states), float("-inf")).flatten(-k).amax(-1)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _centred_half(table: torch.Tensor, k: int, states: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`centred` of a float16 or bfloat16 ``table``, where its entries (those the maximum is over) share a
    sign (``m`` is 0 elsewhere): the difference formed in float32 and rounded once to the table's dtype, which keeps
    an entry to the precision of its distance from the maximum (the precision of a table given centred), where the
    uncentred iterations lost :math:`\\epsilon |m|` in every message and field.  A finite entry the maximum is not
    over that the difference takes past the dtype's range is kept at the largest finite value of its sign, never
    made infinite (a padding entry stays a number that a zero probability multiplies to 0); its gradient is the
    table's (the clamp is a detached correction).  ``m`` (an entry of the table) is exact in the dtype."""
    t = table.detach()
    m = _maxima(t, k, states)
    low = t.masked_fill(~_kept(t, states), float("inf")).flatten(-k).amin(-1)  # +inf where none is kept
    m = torch.where((low >= 0) | (m <= 0), m, torch.zeros_like(m))  # entries of one sign only (see the docstring)
    wide = table.float() - m.float().reshape(m.shape + (1,) * k)
    info = torch.finfo(table.dtype)
    finite = torch.isfinite(table.detach())
    excess = (wide.detach().clamp(info.min, info.max) - wide.detach()).masked_fill(~finite, 0.0)
    return (wide + excess).to(table.dtype), m


def group_states(fg: FactorGraph, variables: torch.Tensor) -> torch.Tensor:
    """``[B, F] + [C] * k`` bool: the entries of a factor group's tables, per model, that are states of all its
    variables the evidence allows (not padding, not ruled out), from ``fg.valid``; ``variables`` is the group's
    ``[F, k]``."""
    C = fg.num_states
    valid = fg.valid.to(fg.unary.device)  # [B, V, C]: states, less padding and what evidence rules out
    F, k = variables.shape
    mask = None
    for i in range(k):
        shape = [valid.shape[0], F] + [1] * k
        shape[2 + i] = C
        part = valid[:, variables[:, i].to(valid.device)].reshape(shape)
        mask = part if mask is None else mask & part
    return mask


def centred_graph(fg: FactorGraph) -> tuple[FactorGraph, torch.Tensor]:
    """``(fg with centred unaries and tables, M [B])``: :math:`\\log Z(fg) = \\log Z(\\tilde{fg}) + M` and
    every score :math:`s(x) = \\tilde s(x) + M`; see the module docstring.

    :param FactorGraph fg: the model, batch size ``B``.
    """
    with exact_precision(fg.unary, *[g.log_potentials for g in fg.groups]) as (unary, *pots):
        unary, total = centred(unary, 1, fg.valid.to(unary.device))
        total = total.sum(-1)
        tables = []
        for g, t in zip(fg.groups, pots):
            t, m = centred(t, g.arity, group_states(fg, g.variables))
            tables.append(t)
            total = total + m.sum(-1)
    groups = [dataclasses.replace(g, log_potentials=t) for g, t in zip(fg.groups, tables)]
    return dataclasses.replace(fg, unary=unary, groups=groups), total


def centred_unary(fg: FactorGraph) -> tuple[FactorGraph, torch.Tensor]:
    """``(fg with centred unaries, M [B])``: each model's and variable's unary table less its detached maximum over
    the states the evidence allows (:func:`centred`), the factor tables as they are, and :math:`M` the sum of
    those maxima, so that :math:`\\log Z(fg) = \\log Z(\\tilde{fg}) + M`.  Loopy belief propagation iterates on
    this graph (its engine centres the factor tables itself, :class:`~hybridpgm.infer.bp_engine.FlatGraph`): a
    constant on a unary table then never enters a message.  No promotion under autocast (BP runs in the tables'
    dtype).

    :param FactorGraph fg: the model, batch size ``B``.
    """
    unary, m = centred(fg.unary, 1, fg.valid.to(fg.unary.device))
    return dataclasses.replace(fg, unary=unary), m.sum(-1)


def centred_tables(tables: Mapping[str, torch.Tensor], arity: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """A :class:`~hybridpgm.graphs.MarkovNet`'s family tables (``batch + (F or 1,) + cards``) each less its
    per-factor maximum (:func:`centred`; no padding there), under autocast in at least float32.

    :param tables: ``name -> table``, as :meth:`MarkovNet.tables <hybridpgm.graphs.MarkovNet.tables>` gives them.
    :param arity: ``name -> k``, the number of variables of each family's factors.
    """
    with exact_precision(*tables.values()) as promoted:
        return {name: centred(t, arity[name])[0] for name, t in zip(tables, promoted)}
