"""A cached pairwise contraction plan for sums (and maxima) of products of log-factors.

Exact inference in a discrete graphical model is one tensor contraction

.. math:: \\log Z_n = \\log \\sum_{x} \\prod_f \\phi_f(x_f, n)

over named dims (one per variable, plus a batch dim ``n`` over evidence rows).
``opt_einsum`` [1] finds the pairwise contraction order once per *pattern*
(which factors, over which dims); :class:`ContractionPlan` stores that order as
a list of small einsum steps and replays it.  The sum-product steps run Pyro's
log-space kernel of :func:`pyro.ops.einsum.torch_log.einsum` (max-shifted
``exp``/``einsum``/``log``, with its bookkeeping precomputed per step); the max-product steps (for MAP) broadcast-add and
take the maximum, so that back-propagating through them recovers the argmax
(Viterbi back-tracking) [2].

**References**

[1] D. G. A. Smith, J. Gray, *opt_einsum - A Python package for optimizing
contraction order for einsum-like expressions*, 2018.

[2] F. Obermeyer, E. Bingham, M. Jankowiak, J. Chiu, N. Pradhan, A. Rush,
N. Goodman, *Tensor Variable Elimination for Plated Factor Graphs*, 2019.
"""

from __future__ import annotations

import string
from collections import OrderedDict
from typing import Hashable, Sequence

import opt_einsum
import torch
from pyro.ops.special import safe_log

__all__ = ["ContractionPlan", "PlanCache"]

_LETTERS = string.ascii_lowercase


class ContractionPlan:
    """The pairwise contraction order of one equation over named dims.

    :param operand_dims: for each operand, the tuple of its dim names.
    :param output_dims: dim names of the result, in order.
    :param dict sizes: size of every dim.
    :param optimize: an ``opt_einsum`` path optimizer (``"greedy"``,
        ``opt_einsum.RandomGreedy(...)``, ...); ``"auto"`` uses opt_einsum's choice for up
        to 12 operands and a 128-trial random-greedy search above that.
    """

    def __init__(self, operand_dims: Sequence[tuple[Hashable, ...]], output_dims: tuple[Hashable, ...],
                 sizes: dict, optimize="auto"):
        names = sorted({d for dims in operand_dims for d in dims} | set(output_dims), key=str)
        sym = {d: opt_einsum.get_symbol(i) for i, d in enumerate(names)}
        back = {s: d for d, s in sym.items()}
        eq = ",".join("".join(sym[d] for d in dims) for dims in operand_dims)
        eq += "->" + "".join(sym[d] for d in output_dims)
        shapes = [tuple(sizes[d] for d in dims) for dims in operand_dims]
        self.output_dims = tuple(output_dims)
        self.equation = eq
        if len(operand_dims) == 1:
            contraction_list = [((0,), None, eq, None, None)]
        else:
            if optimize == "auto" and len(operand_dims) > 12:
                # worth a search: the plan is cached and replayed
                optimize = opt_einsum.RandomGreedy(max_repeats=128, max_time=2.0)
            _, info = opt_einsum.contract_path(eq, *shapes, shapes=True, optimize=optimize)
            contraction_list = info.contraction_list
            self.opt_cost = int(info.opt_cost)
            self.largest_intermediate = int(info.largest_intermediate)
        # steps: (positions popped in order, input dim tuples, output dims, local einsum equation)
        self.steps = []
        current = [tuple(d) for d in operand_dims]
        for inds, _, einsum_str, _, _ in contraction_list:
            ins = [current.pop(i) for i in inds]
            out_syms = einsum_str.split("->")[1]
            out = tuple(back[s] for s in out_syms)
            local = sorted({d for dims in ins for d in dims}, key=str)
            if len(local) > len(_LETTERS):
                raise NotImplementedError(f"a contraction step joins {len(local)} dims (treewidth too large)")
            loc = {d: _LETTERS[i] for i, d in enumerate(local)}
            step_eq = ",".join("".join(loc[d] for d in dims) for dims in ins) + "->" + "".join(loc[d] for d in out)
            self.steps.append((tuple(inds), tuple(ins), out, step_eq, _shift_plan(ins, out)))
            current.append(out)
        assert len(current) == 1 and set(current[0]) == set(output_dims), (current, output_dims)
        self._final_perm = tuple(current[0].index(d) for d in output_dims)

    def __call__(self, operands: Sequence[torch.Tensor], semiring: str = "log") -> torch.Tensor:
        """Contract ``operands`` (log-space tensors in the plan's dim order).

        :param str semiring: ``"log"`` (log-sum-exp of sums: marginalisation),
            ``"max"`` (max of sums: MAP), or ``"prob"`` (plain sum of products of
            probability-space operands: one ``torch.einsum`` per step).
        """
        ops = list(operands)
        for inds, ins, out, step_eq, shifts in self.steps:
            args = [ops.pop(i) for i in inds]
            if semiring == "log":
                ops.append(_log_einsum(step_eq, args, shifts))
            elif semiring == "prob":
                ops.append(torch.einsum(step_eq, *args))
            else:
                ops.append(_max_sum(args, ins, out))
        (result,) = ops
        if self._final_perm != tuple(range(len(self._final_perm))):
            result = result.permute(self._final_perm)
        return result


def _shift_plan(ins, out):
    """For each input: the axes it is maximised over, and how that max lines up with ``out``."""
    plans = []
    for dims in ins:
        red = tuple(i for i, d in enumerate(dims) if d not in out)
        kept = [d for d in dims if d in out]
        order = sorted(range(len(kept)), key=lambda i: out.index(kept[i]))
        view = [1] * len(out)
        plans.append((red, tuple(order), tuple(out.index(kept[i]) for i in order), view))
    return plans


def _log_einsum(equation, operands, shifts):
    """Log-space einsum ``log einsum(exp(a), exp(b), ...)`` with per-output max shifting.

    The same computation as :func:`pyro.ops.einsum.torch_log.einsum`, with the
    bookkeeping precomputed by the plan (one small kernel sequence per step).
    """
    if len(operands) == 1 and not shifts[0][0]:
        t = operands[0]
        return t.permute(shifts[0][1]) if shifts[0][1] != tuple(range(t.dim())) else t.clone()
    exps, total = [], None
    for t, (red, order, positions, view) in zip(operands, shifts):
        shift = t.detach()
        if red:
            shift = shift.amax(dim=red, keepdim=True)
        shift = shift.clamp(min=torch.finfo(shift.dtype).min)
        exps.append((t - shift).exp())
        if red:
            shift = shift.reshape([n for i, n in enumerate(t.shape) if i not in red])
        if order != tuple(range(len(order))):
            shift = shift.permute(order)
        shape = list(view)
        for pos, n in zip(positions, shift.shape):
            shape[pos] = n
        shift = shift.reshape(shape)
        total = shift if total is None else total + shift
    result = safe_log(torch.einsum(equation, *exps))
    return result + total


def _max_sum(args, ins, out):
    """Max over the dims not in ``out`` of the broadcast sum of ``args``."""
    union = list(out) + sorted({d for dims in ins for d in dims} - set(out), key=str)
    total = None
    for t, dims in zip(args, ins):
        perm = sorted(range(len(dims)), key=lambda i: union.index(dims[i]))
        t = t.permute(perm) if perm != list(range(len(dims))) else t
        shape, it = [], iter(t.shape)
        pos = {dims[i] for i in perm}
        for d in union:
            shape.append(next(it) if d in pos else 1)
        t = t.reshape(shape)
        total = t if total is None else total + t
    n_out = len(out)
    if total.dim() == n_out:
        return total.clone() if len(args) == 1 else total
    return total.reshape(*total.shape[:n_out], -1).max(-1).values


class PlanCache:
    """A bounded LRU map from a contraction pattern to its :class:`ContractionPlan`.

    :param int maxsize: number of patterns kept.
    :param optimize: path optimizer passed to :class:`ContractionPlan`.
    """

    def __init__(self, maxsize: int = 256, optimize="auto"):
        self.maxsize = maxsize
        self.optimize = optimize
        self._plans: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, operand_dims, output_dims, sizes, key_extra=()) -> ContractionPlan:
        key = (tuple(map(tuple, operand_dims)), tuple(output_dims), tuple(key_extra))
        plan = self._plans.get(key)
        if plan is not None:
            self.hits += 1
            self._plans.move_to_end(key)
            return plan
        self.misses += 1
        plan = ContractionPlan(operand_dims, output_dims, sizes, self.optimize)
        self._plans[key] = plan
        if len(self._plans) > self.maxsize:
            self._plans.popitem(last=False)
        return plan

    def __len__(self) -> int:
        return len(self._plans)

    def clear(self) -> None:
        self._plans.clear()
