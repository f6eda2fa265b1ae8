"""A random-greedy contraction-path search that draws only from its own random streams.

The greedy pairwise order of ``opt_einsum`` [1] contracts, at each step, the candidate pair of least heuristic
cost, the memory a contraction removes,

.. math:: c(a, b) = |a \\cup b|_{\\mathrm{kept}} - |a| - |b|

(sizes in elements).  A *random-greedy* search [1, 2] runs it several times, each trial choosing among the
:math:`m \\le 8` cheapest live candidates :math:`c_0 \\le c_1 \\le \\dots \\le c_{m-1}` at random with Boltzmann weights

.. math:: p_i \\propto \\exp\\!\\Big(-\\frac{c_i - c_0}{T \\max(1, |c_0|)}\\Big)

(temperature :math:`T`, relative to the scale of the best cost, which changes by orders of magnitude along a
contraction), with every cost multiplied by a jitter :math:`\\mathcal{N}(1, 0.01^2)` that breaks ties, and keeps the
trial of fewest flops (then the smallest largest intermediate; the first such trial on ties).  Trial 0 takes the
cheapest (jittered) candidate at every step.

``opt_einsum.RandomGreedy`` reseeds Python's *global* ``random`` module per trial and draws from it: another
thread's seeded ``random`` stream is moved while a search runs, and two searches at once draw from each other's
seeds (and so find plans that a search alone does not).  :class:`RandomGreedySearch` runs the same search on
``random.Random(r)`` for trial ``r``, one private stream per trial, through opt_einsum's public greedy
(:func:`opt_einsum.paths.ssa_greedy_optimize`, given the chooser and the jittered cost), so it touches no
process-wide state: the plan depends on the contraction alone, in any thread, process or interleaving.  Its draws
are those opt_einsum's trial ``r`` makes after ``random.seed(r)`` (the jitter, then the choice, in the order the
greedy asks for them), so it finds the paths ``opt_einsum.RandomGreedy(max_repeats=trials)`` found alone.

**References**

[1] D. G. A. Smith, J. Gray, *opt_einsum - A Python package for optimizing contraction order for einsum-like
expressions*, JOSS 3(26), 753, 2018.

[2] J. Gray, S. Kourtis, *Hyper-optimized tensor network contraction*, Quantum 5, 410, 2021.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Callable

from opt_einsum import paths

from hybridpgm.errors import ConfigError

__all__ = ["RandomGreedySearch"]


def boltzmann_chooser(rng: random.Random, nbranch: int = 8, temperature: float = 1.0) -> Callable:
    """A ``choose_fn`` for :func:`opt_einsum.paths.ssa_greedy_optimize`: pops up to ``nbranch`` live candidates
    (both operands still ``remaining``) off the heap, picks one with probability
    :math:`\\propto \\exp(-(c_i - c_0) / (T \\max(1, |c_0|)))` by ``rng`` and pushes the others back.

    A candidate is ``((cost, id2, id1), k1, k2, k12)``, the heap ordered by that key; ``None`` when no live
    candidate was left (the greedy then asks again while its heap holds any)."""
    def choose(queue: list, remaining: dict):
        picked = []
        while queue and len(picked) < nbranch:
            candidate = heapq.heappop(queue)
            if candidate[1] in remaining and candidate[2] in remaining:  # not made obsolete by an earlier step
                picked.append(candidate)
        if len(picked) <= 1:
            return picked[0] if picked else None
        costs = [candidate[0][0] for candidate in picked]
        scale = temperature * max(1, abs(costs[0]))
        weights = [math.exp(-(c - costs[0]) / scale) for c in costs]
        (chosen,) = rng.choices(range(len(picked)), weights=weights)
        for i, candidate in enumerate(picked):
            if i != chosen:
                heapq.heappush(queue, candidate)
        return picked[chosen]
    return choose


def jittered_memory_removed(rng: random.Random) -> Callable:
    """A ``cost_fn`` for :func:`opt_einsum.paths.ssa_greedy_optimize`: the memory a contraction removes,
    :math:`|k_{12}| - |k_1| - |k_2|`, times a draw of :math:`\\mathcal{N}(1, 0.01^2)` from ``rng``."""
    def cost(size12, size1, size2, k12, k1, k2):
        return rng.gauss(1.0, 0.01) * (size12 - size1 - size2)
    return cost


def ssa_path_cost(ssa_path, inputs: list, output: frozenset, sizes: dict) -> tuple[int, int]:
    """``(flops, largest intermediate)`` of a path in static single assignment form (each step's result appended
    to ``inputs`` and numbered after them), each pairwise step counted by
    :func:`opt_einsum.paths.calc_k12_flops` (its result keeps the dims of the output and of the operands left)."""
    inputs = list(inputs)
    remaining = set(range(len(inputs)))
    flops = largest = 0
    for i, j in ssa_path:
        k12, step = paths.calc_k12_flops(inputs, output, remaining, i, j, sizes)
        remaining.difference_update((i, j))
        remaining.add(len(inputs))
        inputs.append(k12)
        flops += step
        largest = max(largest, math.prod(sizes[d] for d in k12))
    return flops, largest


class RandomGreedySearch:
    """A path optimizer with opt_einsum's signature, ``search(inputs, output, size_dict, memory_limit=None)``:
    the best of ``trials`` random-greedy trials by flops (module docstring), trial ``r`` drawing from
    ``random.Random(r)`` only.

    :param int trials: trials run (no time limit: the same plan on a loaded machine as on a quiet one).
    :param float temperature: :math:`T` of the Boltzmann choice (relative to the best candidate's cost).
    :param int nbranch: the cheapest live candidates each choice is among.
    :raises ConfigError: for fewer than one trial or branch, or a temperature that is not positive.
    """

    def __init__(self, trials: int = 128, temperature: float = 1.0, nbranch: int = 8):
        if not (trials >= 1 and nbranch >= 1 and temperature > 0):
            raise ConfigError(f"RandomGreedySearch needs trials >= 1, nbranch >= 1 and temperature > 0; got "
                              f"trials={trials!r}, nbranch={nbranch!r}, temperature={temperature!r}")
        self.trials = trials
        self.temperature = temperature
        self.nbranch = nbranch

    def __repr__(self) -> str:
        return f"RandomGreedySearch(trials={self.trials}, temperature={self.temperature}, nbranch={self.nbranch})"

    def __call__(self, inputs, output, size_dict: dict, memory_limit=None) -> list:
        """The best trial's path in opt_einsum's linear form (positions into the list of operands left).

        :param inputs: each operand's set of dims.
        :param output: the result's dims.
        :param dict size_dict: each dim's size.
        :param memory_limit: ignored, as ``opt_einsum.RandomGreedy`` ignores it.
        """
        inputs = [frozenset(dims) for dims in inputs]
        output = frozenset(output)
        best = None
        for r in range(self.trials):
            rng = random.Random(r)
            choose = None if r == 0 else boltzmann_chooser(rng, self.nbranch, self.temperature)
            ssa = paths.ssa_greedy_optimize(inputs, output, size_dict, choose, jittered_memory_removed(rng))
            flops, largest = ssa_path_cost(ssa, inputs, output, size_dict)
            if best is None or (flops, largest) < best[:2]:
                best = flops, largest, ssa
        return [tuple(step) for step in paths.ssa_to_linear(best[2])]
