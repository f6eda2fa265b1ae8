"""The operands of an MRF's exact contraction, and when it runs in probability space.

Float64 and float32 models are contracted on max-shifted potentials :math:`\\tilde\\phi_{b,f} =
\\exp(\\theta_{b,f} - m_{b,f})`, :math:`m_{b,f} = \\max_{x_f} \\theta_{b,f}(x_f)` (held constant), and
:math:`\\log Z_b = \\log \\tilde Z_b + \\sum_f m_{b,f}`; a model whose :math:`\\tilde Z_b` falls below
:func:`probability_floor` is contracted again in log space, and float32 models of very many joint states run in
float64 (:func:`probability_dtype`).  Under autocast the queries run in at least float32 (:func:`_exactly`).
See :mod:`hybridpgm.infer.mrf_exact`.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.infer.bn_contract import PROBABILITY_FLOOR
from hybridpgm.infer.mrf_plan import _Structure
from hybridpgm.precision_scope import exact_precision

__all__ = ["probability_dtype", "probability_floor"]


def probability_floor(dtype: torch.dtype, log_states: float) -> float:
    """The probability-space :math:`\\tilde Z` below which a model is contracted again in log space.

    :math:`\\max(f_{\\mathrm{dtype}},\\ t\\,S/\\epsilon)`: the floor of
    :data:`~hybridpgm.infer.bn_spaces.PROBABILITY_FLOOR` (1e-250, 1e-15), raised for models whose
    :math:`S` joint states could lose more than the dtype's rounding :math:`\\epsilon` to underflow
    (:math:`t` its smallest normal number); ``inf`` (log space only) for the dtypes without a floor, and where
    the bound exceeds the dtype's range (float32 models of :math:`2^{231}` joint states or more).

    :param float log_states: :math:`\\log S`.
    """
    if dtype not in PROBABILITY_FLOOR:
        return math.inf
    info = torch.finfo(dtype)
    log_bound = math.log(info.tiny) + log_states - math.log(info.eps)
    return max(PROBABILITY_FLOOR[dtype], math.exp(log_bound) if log_bound < math.log(info.max) else math.inf)



def _folded(fg: FactorGraph, st: _Structure, unary: torch.Tensor) -> tuple[list, list]:
    """Each group's log-potentials with the unaries folded in, ``[B, F_g] + [C] * k``, and the lone variables'
    unaries ``[B, |v|]`` (``-inf`` at the states the evidence rules out)."""
    masked = unary.masked_fill(~fg.valid, float("-inf"))
    padded = torch.cat([masked, masked.new_zeros(masked.shape[0], 1, masked.shape[2])], dim=1)  # [B, V + 1, C]
    stacks = []
    for group, fold in zip(fg.groups, st.fold):
        t, k = group.log_potentials, group.arity
        for i, idx in enumerate(fold):
            t = t + padded[:, idx].reshape(t.shape[:2] + (1,) * i + padded.shape[-1:] + (1,) * (k - 1 - i))
        stacks.append(t)
    return stacks, [masked[:, v, : st.cards[v]] for v in st.alone]


def _operands(st: _Structure, stacks: list, alone: list) -> list:
    """The plan's operands: every factor of every stack (padding cropped), then the lone unaries."""
    ops = []
    for t, crop in zip(stacks, st.crop):
        factors = t.unbind(1)
        ops += factors if crop is None else [x[(slice(None),) + c] for x, c in zip(factors, crop)]
    return ops + alone


def _shifted(t: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(exp(t - m), m)`` with ``m`` the maximum over the last ``dims`` dims (held constant, kept finite)."""
    m = t.detach().flatten(-dims).amax(-1).clamp(min=torch.finfo(t.dtype).min)
    return (t - m.reshape(m.shape + (1,) * dims)).exp(), m


def _prob_operands(st: _Structure, stacks: list, alone: list) -> tuple[list, torch.Tensor]:
    """``(operands, shift [B])``: the plan's max-shifted probability-space operands and the sum of the shifts."""
    exps, total = [], 0.0
    for t in stacks:
        e, m = _shifted(t, t.dim() - 2)
        exps.append(e)
        total = total + m.sum(1)
    lone = []
    for t in alone:
        e, m = _shifted(t, 1)
        lone.append(e)
        total = total + m
    return _operands(st, exps, lone), total


def _prob_contract(st: _Structure, stacks: list, alone: list) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z̃ [B], shift [B])``: the contraction of the max-shifted potentials and the sum of the shifts."""
    ops, total = _prob_operands(st, stacks, alone)
    return st.plan(ops, "prob"), total


def probability_dtype(dtype: torch.dtype, log_states: float) -> torch.dtype | None:
    """The dtype a model of ``dtype`` and :math:`\\log S` joint states is contracted in, in probability space:
    its own while :func:`probability_floor` is the dtype's fixed floor; float64 for a float32 model whose joint
    states raise the float32 floor (:math:`S > 10^{16}`, binary grids from 8x8 on: in the random Ising grids
    measured, couplings of scale 0.5, the shifted sum fell under the raised floor from 9x9 on, and float64
    probability space is about as fast as float32's on a CPU, and 2-4 times faster than log space); ``None``
    (log space) for the others."""
    if dtype not in PROBABILITY_FLOOR:
        return None
    if probability_floor(dtype, log_states) <= PROBABILITY_FLOOR[dtype]:
        return dtype
    if torch.float64 in PROBABILITY_FLOOR and probability_floor(torch.float64, log_states) < math.inf:
        return torch.float64
    return None


def _with_potentials(fg: FactorGraph, unary: torch.Tensor, pots) -> FactorGraph:
    """``fg`` with ``unary`` and the groups' log-potentials ``pots`` (``fg`` itself where they are its own)."""
    if unary is fg.unary and all(p is g.log_potentials for p, g in zip(pots, fg.groups)):
        return fg
    groups = [dataclasses.replace(g, log_potentials=p) for g, p in zip(fg.groups, pots)]
    return dataclasses.replace(fg, unary=unary, groups=groups)


def _exactly(fn, fg: FactorGraph, *args):
    """``fn(fg, *args)`` under :class:`~hybridpgm.precision_scope.exact_precision` of ``fg``'s log-potentials:
    under autocast, with autocast off and the potentials (half precision from networks run under it) in at least
    float32; ``fn(fg, *args)`` itself otherwise."""
    with exact_precision(fg.unary, *[g.log_potentials for g in fg.groups]) as (unary, *pots):
        return fn(_with_potentials(fg, unary, pots), *args)
