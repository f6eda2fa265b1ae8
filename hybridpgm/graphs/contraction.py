"""A cached pairwise contraction plan for sums (and maxima) of products of log-factors.

Exact inference in a discrete graphical model is one tensor contraction

.. math:: \\log Z_n = \\log \\sum_{x} \\prod_f \\phi_f(x_f, n)

over named dims (one per variable, plus a batch dim ``n`` over evidence rows).
``opt_einsum`` [1] finds the pairwise contraction order once per *pattern*
(which factors, over which dims); :class:`ContractionPlan` stores that order as
a list of small einsum steps and replays it.  The sum-product steps run Pyro's
log-space kernel of :func:`pyro.ops.einsum.torch_log.einsum` (max-shifted
``exp``/``einsum``/``log``, with its bookkeeping precomputed per step); the
probability-space steps (float64 networks) are one ``torch.bmm`` each, with
every intermediate laid out as the matmul returns it, so the larger operand of
the next step is rarely copied; the max-product steps (for MAP) broadcast-add and
take the maximum, so that back-propagating through them recovers the argmax
(Viterbi back-tracking) [2].  The kernels of one step in each semiring are in
:mod:`hybridpgm.graphs.contraction_steps`.

**References**

[1] D. G. A. Smith, J. Gray, *opt_einsum - A Python package for optimizing
contraction order for einsum-like expressions*, 2018.

[2] F. Obermeyer, E. Bingham, M. Jankowiak, J. Chiu, N. Pradhan, A. Rush,
N. Goodman, *Tensor Variable Elimination for Plated Factor Graphs*, 2019.
"""

from __future__ import annotations

import contextlib
import math
import string
from collections import Counter, OrderedDict
from typing import Callable, Hashable, Sequence

import opt_einsum
import torch

from hybridpgm.graphs.absorption import absorbed_groups, slot_layout
from hybridpgm.graphs.contraction_steps import log_einsum, max_sum, pair_plan, pair_product, shift_plan
from hybridpgm.graphs.path_search import RandomGreedySearch
from hybridpgm.graphs.reverse_pass import Workspace

__all__ = ["AbsorbingPlan", "ContractionPlan", "PlanCache"]

_LETTERS = string.ascii_letters


class ContractionPlan:
    """The pairwise contraction order of one equation over named dims.

    :param operand_dims: for each operand, the tuple of its dim names.
    :param output_dims: dim names of the result, in order.
    :param dict sizes: size of every dim.
    :param optimize: a path optimizer: an ``opt_einsum`` name (``"greedy"``, ...), an optimizer object with
        opt_einsum's signature (:class:`~hybridpgm.graphs.path_search.RandomGreedySearch`, ...); ``"auto"`` uses
        opt_einsum's choice for up to 12 operands and a 128-trial random-greedy search above that
        (:class:`~hybridpgm.graphs.path_search.RandomGreedySearch`: private random streams, Python's global
        ``random`` is neither read nor moved).  The search gives the same plan in every process and thread
        (:func:`_search_path`).  An optimizer object of the caller's runs as it is: ``opt_einsum.RandomGreedy``
        reseeds and draws from Python's global ``random``.
    """

    def __init__(self, operand_dims: Sequence[tuple[Hashable, ...]], output_dims: tuple[Hashable, ...],
                 sizes: dict, optimize="auto"):
        names = sorted({d for dims in operand_dims for d in dims} | set(output_dims), key=str)
        sym = {d: opt_einsum.get_symbol(i) for i, d in enumerate(names)}
        eq = ",".join("".join(sym[d] for d in dims) for dims in operand_dims)
        eq += "->" + "".join(sym[d] for d in output_dims)
        self.output_dims = tuple(output_dims)
        self.equation = eq
        if len(operand_dims) == 1:
            walk = [((0,), dict.fromkeys(operand_dims[0]), tuple(output_dims), 0, 0)]
        else:
            if optimize == "auto" and len(operand_dims) > 12:
                # worth a search: the plan is cached and replayed.  A fixed number of trials (no time limit)
                # gives the same plan on a loaded machine as on a quiet one.
                optimize = RandomGreedySearch(trials=128)
            path = _search_path(operand_dims, output_dims, names, sizes, optimize)
            walk = _path_steps(operand_dims, output_dims, path, sizes)
        # steps: (positions popped in order, input dim tuples, output dims, local einsum equation)
        self.steps = []
        current = [tuple(d) for d in operand_dims]
        flops, results = 0, []
        for inds, joined, out, step_flops, size in walk:
            if len(joined) > len(_LETTERS):  # refused at the first such step: the path's rest is never walked
                raise NotImplementedError(f"a contraction step joins {len(joined)} dims (treewidth too large)")
            flops += step_flops
            results.append(size)
            ins = [current.pop(i) for i in inds]
            pair = None
            if len(ins) == 2:  # lay the result out as the batched matmul gives it: no copy
                pair, out = pair_plan(ins, out, sizes)
            local = sorted({d for dims in ins for d in dims}, key=str)
            loc = {d: _LETTERS[i] for i, d in enumerate(local)}
            step_eq = ",".join("".join(loc[d] for d in dims) for dims in ins) + "->" + "".join(loc[d] for d in out)
            self.steps.append((tuple(inds), tuple(ins), out, step_eq, shift_plan(ins, out), pair))
            current.append(out)
        if len(operand_dims) > 1:
            #: opt_einsum's flop count of the path (:func:`opt_einsum.helpers.flop_count`, summed over the steps)
            self.opt_cost = flops
            #: elements of the largest step result
            self.largest_intermediate = max(results, default=1)
        assert len(current) == 1 and set(current[0]) == set(output_dims), (current, output_dims)
        self._final_perm = tuple(current[0].index(d) for d in output_dims)

    def __call__(self, operands: Sequence[torch.Tensor], semiring: str = "log",
                 step_args: list | None = None) -> torch.Tensor:
        """Contract ``operands`` (log-space tensors in the plan's dim order).

        :param str semiring: ``"log"`` (log-sum-exp of sums: marginalisation),
            ``"max"`` (max of sums: MAP), or ``"prob"`` (plain sum of products of
            probability-space operands: one batched matmul per pairwise step, laid out so that the
            larger operand is not copied).
        :param list step_args: if given, each step's arguments (a list of tensors, laid out as the step's
            input dims) are appended to it, in step order (what backward sampling conditions on:
            :mod:`hybridpgm.graphs.plan_sampling`).
        """
        ops = list(operands)
        for inds, ins, out, step_eq, shifts, pair in self.steps:
            args = [ops.pop(i) for i in inds]
            if step_args is not None:
                step_args.append(args)
            if semiring == "log":
                ops.append(log_einsum(step_eq, args, shifts))
            elif semiring == "prob":
                ops.append(pair_product(args, pair) if pair is not None else torch.einsum(step_eq, *args))
            else:
                ops.append(max_sum(args, ins, out))
        (result,) = ops
        if self._final_perm != tuple(range(len(self._final_perm))):
            result = result.permute(self._final_perm)
        return result


def _search_path(operand_dims, output_dims, names: list, sizes: dict, optimize) -> list:
    """opt_einsum's pairwise order for the operands, searched over integer labels (``names[i]`` -> ``i``).

    The optimizers walk sets of labels, and a set of strings iterates in an order that follows the
    process's hash seed (``PYTHONHASHSEED``), so string labels break ties differently in every process:
    another plan, another speed, other rounding.  Integers hash to themselves, so the search, and the
    plan, are the same in every process.  The ``"auto"`` search draws from private streams only
    (:class:`~hybridpgm.graphs.path_search.RandomGreedySearch`), so threads searching at once find the plans
    each finds alone, and leave Python's global ``random`` as it was.
    """
    label = {d: i for i, d in enumerate(names)}
    inputs = [frozenset(label[d] for d in dims) for dims in operand_dims]
    output = frozenset(label[d] for d in output_dims)
    size_dict = {label[d]: sizes[d] for d in names}
    if len(inputs) <= 2:
        return [tuple(range(len(inputs)))]
    search = optimize if callable(optimize) else opt_einsum.paths.get_path_fn(optimize)
    return list(search(inputs, output, size_dict, None))


def _path_steps(operand_dims, output_dims, path, sizes: dict):
    """Walk ``path`` (a pairwise path in opt_einsum's linear form) step by step, as
    :func:`opt_einsum.contract_path` lists it, without building the steps after the one the caller stops at.

    Each step pops the operands at its positions (highest first) and appends their contraction, whose dims
    are those of the step's operands still held by another operand or by the output,

    .. math:: \\mathrm{out}_k = J_k \\cap \\Big(O \\cup \\bigcup_{j \\text{ remaining}} D_j\\Big),
        \\qquad J_k = \\bigcup_{i \\in \\text{step } k} D_i,

    ordered as the dims first occur in the step's operands (opt_einsum's order: it fixes the next steps'
    layouts), and for the last step the output's dims in the output's order.  A count of the operands
    holding each dim decides membership in the union in :math:`O(|J_k|)`, where ``contract_path``
    re-forms the union over all remaining operands at every step (:math:`O(n)` per step,
    :math:`O(n^2)` for ``n`` operands).

    :param operand_dims: for each operand, the tuple of its dim names.
    :param output_dims: dim names of the result, in order.
    :param path: the positions contracted at each step (:func:`_search_path`).
    :param dict sizes: size of every dim.
    :return: an iterator of ``(positions, joined, out, flops, size)`` per step: the positions popped
        (descending), the dims :math:`J_k` the step joins (a dict, keys in order of first occurrence),
        the result's dims, opt_einsum's flop count of the step (:func:`opt_einsum.helpers.flop_count`) and
        the result's number of elements.
    """
    output = set(output_dims)
    held = Counter(d for dims in operand_dims for d in set(dims))  # dim -> operands holding it
    layout = [tuple(dims) for dims in operand_dims]  # each operand's dims as opt_einsum orders them
    last = len(path) - 1
    for k, step in enumerate(path):
        inds = tuple(sorted(step, reverse=True))
        ins = [layout.pop(i) for i in inds]
        for dims in ins:
            held.subtract(set(dims))
        joined = dict.fromkeys(d for dims in ins for d in dims)
        kept = tuple(d for d in joined if d in output or held[d] > 0)
        flops = opt_einsum.helpers.flop_count(joined, len(kept) < len(joined), len(inds), sizes)
        out = tuple(output_dims) if k == last else kept
        held.update(set(out))
        layout.append(out)
        yield inds, joined, out, flops, opt_einsum.helpers.compute_size_by_dict(kept, sizes)


class AbsorbingPlan:
    """Eliminate evidence-only variables first, then run one :class:`ContractionPlan`.

    A variable ``v`` (not in the output) qualifies when every operand that holds
    it, except at most one *main* operand, is a per-row vector over ``v`` only
    (dims within ``{batch, v}``: an evidence indicator, a soft-evidence
    likelihood, a query indicator), and at least one such vector exists.  Its
    group is contracted before the main plan, so a leaf observed in some rows
    costs what indexing its table costs in a single-pattern batch: the table
    ``[pa, v]`` becomes ``[N, pa]`` (the same factor indexing gives).  Repeats,
    the qualifying variable first by ``str`` each time, while some variable
    qualifies (:func:`~hybridpgm.graphs.absorption.absorbed_groups`, in
    :math:`O(\\sum_i |D_i| \\log n)`).  ``opt_einsum`` finds the same elimination
    only by chance once a batch dim makes early intermediates look expensive.

    :param batch_dim: the name of the row dim (or ``None``).
    """

    def __init__(self, operand_dims, output_dims, sizes: dict, optimize="auto", batch_dim=None):
        found, live = absorbed_groups(operand_dims, output_dims, batch_dim)
        #: (positions popped, ContractionPlan) applied in order, each result appended (:func:`absorbed_groups`)
        self.groups = [(positions, ContractionPlan(g_dims, new_dims, sizes, "greedy"))
                       for positions, _, g_dims, new_dims in found]
        #: (per group its operands' slots, the main plan's slots): see :meth:`absorb`
        self._slots = ([slots for _, slots, _, _ in found], live)
        every = [tuple(d) for d in operand_dims] + [new_dims for *_, new_dims in found]
        dims = [every[s] for s in live]
        self.main = ContractionPlan(dims, output_dims, sizes, optimize)
        plans = [self.main] + [p for _, p in self.groups]
        #: opt_einsum's flop count and largest intermediate over the absorbed groups and the main plan
        self.opt_cost = sum(getattr(p, "opt_cost", 0) for p in plans)
        self.largest_intermediate = max(getattr(p, "largest_intermediate", 0) for p in plans)
        #: elements per row of every intermediate that carries the row dim (what one row adds to the memory a
        #: contraction holds for its backward pass); 0 without a row dim
        per_row = [math.prod(sizes[d] for d in out if d != batch_dim)
                   for p in plans for _, _, out, *_ in p.steps if batch_dim in out]
        self.row_elements = sum(per_row)
        #: elements per row of the largest intermediate that carries the row dim (0 without one)
        self.largest_row_elements = max(per_row, default=0)
        #: elements of the largest intermediate that does not carry the row dim (its size whatever the rows)
        self.largest_free_elements = max((math.prod(sizes[d] for d in out) for p in plans
                                          for _, _, out, *_ in p.steps if batch_dim not in out), default=0)

    @property
    def steps(self) -> list:
        """Every pairwise step in the order :meth:`__call__` runs them: the absorbed groups', then the main
        plan's (each step as in :attr:`ContractionPlan.steps`; what backward sampling walks back along)."""
        return [step for _, plan in self.groups for step in plan.steps] + self.main.steps

    @property
    def output_dims(self) -> tuple:
        return self.main.output_dims

    def __call__(self, operands, semiring: str = "log", step_args: list | None = None) -> torch.Tensor:
        """Contract as :meth:`ContractionPlan.__call__` does (``step_args`` collects the arguments of
        every step of :attr:`steps`, in that order)."""
        ops = self.absorb(operands, lambda plan, args: plan(args, semiring, step_args))
        return self.main(ops, semiring, step_args)

    def absorb(self, operands: Sequence, contract: Callable) -> list:
        """The operands of :attr:`main`: ``operands`` (one per dims of the constructor's ``operand_dims``, of any
        kind: tensors, the ids of a tape) after each absorbed group, in order, is replaced by its contraction.

        For group :math:`g` with plan :math:`P_g`, the operands :math:`o` become
        :math:`[o_i]_{i \\notin g} \\,\\Vert\\, [\\mathrm{contract}(P_g, [o_i]_{i \\in g})]`: the ones it does not
        hold, in order, then its result.  Each operand and each group's result has a slot, numbered once when
        the plan is built (:mod:`hybridpgm.graphs.absorption`), so a call reads each slot once, :math:`O(n)` for
        ``n`` operands (rebuilding the list per group was :math:`O(n^2)`); this is the one place the groups are
        applied, by :meth:`__call__` and by the hand-written reverse pass
        (:func:`hybridpgm.graphs.reverse_pass.value_and_gradients`) alike.

        :param operands: ``len(operand_dims)`` operands, in the constructor's order.
        :param contract: ``contract(plan, args)``, the contraction of ``args`` (in the group's order) by one
            group's :class:`ContractionPlan`, an operand like the others.
        :returns: the operands of :attr:`main`, in the order of its ``operand_dims``.
        """
        slots = self.__dict__.get("_slots")
        if slots is None:  # a plan pickled (in a network's plan cache) before its slots were stored
            slots = self._slots = slot_layout([g for g, _ in self.groups], len(operands))
        group_slots, live = slots
        ops = list(operands)
        for group, (_, plan) in zip(group_slots, self.groups):
            args = [ops[s] for s in group]
            for s in group:  # what the group consumed is not held past it
                ops[s] = None
            ops.append(contract(plan, args))
        return [ops[s] for s in live]


class PlanCache:
    """A bounded LRU map from a contraction pattern to its :class:`ContractionPlan`.

    :param int maxsize: number of patterns kept.
    :param optimize: path optimizer passed to :class:`ContractionPlan`.
    """

    def __init__(self, maxsize: int = 256, optimize="auto", batch_dim=None):
        self.maxsize = maxsize
        self.optimize = optimize
        #: with a batch dim name, plans first absorb evidence-only variables (:class:`AbsorbingPlan`)
        self.batch_dim = batch_dim
        self._plans: OrderedDict = OrderedDict()
        #: facts derived from the network's structure that live exactly as long as its plans (cleared with them)
        self.memo: dict = {}
        self.hits = 0
        self.misses = 0
        #: reused by the reverse passes of exact queries (:mod:`hybridpgm.graphs.reverse_pass`); freed by :meth:`clear`
        self.workspace = Workspace()

    def get(self, operand_dims, output_dims, sizes, key_extra=(), batch_dim=None, optimize=None) -> ContractionPlan:
        """The cached plan of this pattern; ``batch_dim`` (or the cache's) selects :class:`AbsorbingPlan`.

        :param sizes: dict dim -> size, or a callable returning it (called only when the plan is new).
        :param optimize: the path optimizer for a new plan (default: the cache's); part of the key.
        """
        batch_dim = self.batch_dim if batch_dim is None else batch_dim
        key = (tuple(map(tuple, operand_dims)), tuple(output_dims), tuple(key_extra), batch_dim, optimize)
        plan = self._plans.get(key)
        if plan is not None:
            self.hits += 1
            with contextlib.suppress(KeyError):  # evicted by another thread since the read: the plan still holds
                self._plans.move_to_end(key)
            return plan
        self.misses += 1
        sizes = sizes() if callable(sizes) else sizes
        optimize = self.optimize if optimize is None else optimize
        if batch_dim is not None:
            plan = AbsorbingPlan(operand_dims, output_dims, sizes, optimize, batch_dim)
        else:
            plan = ContractionPlan(operand_dims, output_dims, sizes, optimize)
        self._plans[key] = plan
        if len(self._plans) > self.maxsize:
            self._plans.popitem(last=False)
        return plan

    def __len__(self) -> int:
        return len(self._plans)

    def clear(self) -> None:
        self._plans.clear()
        self.memo.clear()
        self.workspace.release()
