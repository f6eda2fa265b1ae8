"""Exact MRF inference (log Z and every single-variable marginal) against plain Pyro and pgmpy.

``MarkovNet.log_partition("exact")`` / ``.marginals("exact")`` (:mod:`hybridpgm.infer.mrf_exact`: unaries folded
into the factors, a cached contraction order, probability space with per-factor max shifts) against

* **plain Pyro**: one log-space einsum over all log-potentials with ``pyro.ops.einsum.contract`` and its
  ``torch_log`` backend (the order found by opt_einsum on every call), marginals by ``torch.autograd.grad``
  with respect to the unaries: what a Pyro user writes, and what hybridpgm ran before;
* **pgmpy** (``BeliefPropagation``: a junction tree, exact), the model built once outside the timing; each
  call calibrates the tree; log Z is the log of the sum of one calibrated clique belief, marginals are the
  clique beliefs summed down to each variable (cheaper than pgmpy's ``query``, whose variable elimination over
  all variables runs out of memory from 8x8 grids on); the factors are given pairwise first;
* hybridpgm with float64 taken out of the probability-space floors (``log_space``): the same cached plans in
  log space, so the gain of probability space alone shows.

All ways run in one process in interleaved rounds (``common.interleaved_ways``: the order reversed every other
round, each timing the mean of as many calls as fill ``--min-timing-s``, medians over ``--rounds``), one torch
thread, on random Ising grids (couplings ``N(0, 0.5^2)``, fields ``N(0, 1)``) and a 3-state Potts grid; per
model (a batch of ``B`` models is one call, divided by ``B``).  pgmpy runs only on the one-model Ising grids up
to ``--pgmpy-max-side`` (6 by default: an 8x8 grid took it 5-20 s per call, depending on the process; 10x10 more
than a minute), and on the Potts grid with ``--pgmpy-potts``.  The first call (the contraction order searched)
is timed separately.

    python benchmarks/mrf_exact.py            # -> results/mrf_exact.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import opt_einsum
import torch
from pyro.ops.einsum import contract

from common import (add_interleaved_arguments, check_agreement, interleaved_ways, prepare_torch, tolerance,
                    write_interleaved)

from hybridpgm.graphs import grid_edges, ising_grid, potts_grid
from hybridpgm.infer import bn_contract, mrf_exact

#: way -> the setting ``use`` applies
WAYS = ("hybridpgm", "log_space", "plain_pyro", "pgmpy")


def plain_pyro_log_z(fg, unary: torch.Tensor) -> torch.Tensor:
    """``[B]`` log Z: one ``pyro.ops.einsum.contract`` over the masked unaries and every factor, in log space."""
    sym = opt_einsum.get_symbol
    batch = sym(fg.num_vars)
    masked = unary.masked_fill(~fg.valid, float("-inf"))
    terms = [batch + sym(v) for v in range(fg.num_vars)]
    operands = [masked[:, v] for v in range(fg.num_vars)]
    for group in fg.groups:
        for f, scope in enumerate(group.variables.tolist()):
            terms.append(batch + "".join(sym(v) for v in scope))
            operands.append(group.log_potentials[:, f])
    return contract(",".join(terms) + "->" + batch, *operands, backend="pyro.ops.einsum.torch_log")


def plain_pyro_marginals(fg) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log Z [B], marginals [B, V, C])``: the gradient of log Z with respect to the unaries."""
    delta = torch.zeros_like(fg.unary, requires_grad=True)
    with torch.enable_grad():
        log_z = plain_pyro_log_z(fg, fg.unary + delta)
        (marg,) = torch.autograd.grad(log_z.sum(), delta)
    return log_z.detach(), marg


def pgmpy_model(mrf, fg):
    """The same model (one of the batch: the first) as a pgmpy ``DiscreteMarkovNetwork``."""
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork

    names, cards = list(mrf.cards), list(mrf.cards.values())
    model = DiscreteMarkovNetwork()
    model.add_nodes_from(names)
    factors = []
    for group in fg.groups:
        for f, scope in enumerate(group.variables.tolist()):
            model.add_edges_from([(names[a], names[b]) for i, a in enumerate(scope) for b in scope[i + 1:]])
            table = group.log_potentials[0, f][tuple(slice(0, cards[v]) for v in scope)]
            factors.append(DiscreteFactor([names[v] for v in scope], [cards[v] for v in scope],
                                          table.exp().flatten().tolist()))
    factors += [DiscreteFactor([v], [c], fg.unary[0, i, :c].exp().tolist()) for i, (v, c) in enumerate(zip(names,
                                                                                                             cards))]
    model.add_factors(*factors)
    return model, names


def pgmpy_query(model, names, marginals: bool):
    """Calibrate the junction tree; ``log Z`` (``[1]``), or ``(log Z, marginals [1, V, C])`` too."""
    from pgmpy.inference import BeliefPropagation

    bp = BeliefPropagation(model)
    bp.calibrate()
    beliefs = bp.get_clique_beliefs()
    log_z = torch.tensor([math.log(next(iter(beliefs.values())).values.sum())], dtype=torch.float64)
    if not marginals:
        return log_z
    home = {}
    for clique in beliefs:
        for v in clique:
            home.setdefault(v, clique)
    rows = []
    for v in names:
        b = beliefs[home[v]].marginalize([u for u in home[v] if u != v], inplace=False)
        rows.append(torch.as_tensor(b.normalize(inplace=False).values, dtype=torch.float64))
    C = max(r.numel() for r in rows)
    return log_z, torch.stack([torch.nn.functional.pad(r, (0, C - r.numel())) for r in rows])[None]


def workloads(args) -> list:
    """``(label, MarkovNet, models B, pgmpy too)``: the Ising grids of ``--sides`` (one model each; pgmpy up to
    ``--pgmpy-max-side``), ``--batched-side`` with ``--batch`` models, and a 3-state Potts grid of
    ``--potts-side`` (pgmpy with ``--pgmpy-potts``)."""
    g = torch.Generator().manual_seed(args.seed)

    def ising(n, B):
        J = 0.5 * torch.randn(B, len(grid_edges(n, n)), generator=g, dtype=torch.float64)
        h = torch.randn(B, n * n, generator=g, dtype=torch.float64)
        return ising_grid(n, n, J.squeeze(0) if B == 1 else J, h.squeeze(0) if B == 1 else h)

    out = [(f"ising {n}x{n}", ising(n, 1), 1, n <= args.pgmpy_max_side) for n in args.sides]
    if args.batch > 1:
        out.append((f"ising {args.batched_side}x{args.batched_side} x{args.batch}",
                    ising(args.batched_side, args.batch), args.batch, False))
    if args.potts_side:
        n = args.potts_side
        theta = torch.randn(n * n, 3, generator=g, dtype=torch.float64)
        out.append((f"potts3 {n}x{n}", potts_grid(n, n, 3, 0.5, theta), 1, args.pgmpy_potts))
    return out


def bench(label, mrf, B, with_pgmpy, args, found) -> dict:
    fg = mrf.to(args.device).factor_graph()
    ways = [w for w in WAYS if w != "pgmpy" or with_pgmpy]
    model = pgmpy_model(mrf, fg) if "pgmpy" in ways else None
    mrf_exact._STRUCTURES.clear()
    start = time.perf_counter()
    mrf_exact.exact_log_partition(fg)
    first_s = time.perf_counter() - start
    current = {}

    def use(way):
        current["way"] = way
        bn_contract.PROBABILITY_FLOOR.clear()
        bn_contract.PROBABILITY_FLOOR.update(found if way != "log_space" else
                                             {k: v for k, v in found.items() if k != torch.float64})

    def run(marginals: bool):
        way = current["way"]
        if way == "pgmpy":
            return pgmpy_query(*model, marginals)
        if way == "plain_pyro":
            return plain_pyro_marginals(fg) if marginals else plain_pyro_log_z(fg, fg.unary)
        return mrf_exact.exact_marginals(fg) if marginals else mrf_exact.exact_log_partition(fg)

    kinds = {"log_z": lambda: run(False), "marginals": lambda: run(True)}
    with torch.no_grad():
        answers, times, _, per_call = interleaved_ways(kinds, {w: w for w in ways}, use, args, B,
                                                           args.device)
    res = {"model": label, "variables": len(mrf.cards), "models_per_call": B, "first_call_s": first_s,
           "plan_flops_per_model": getattr(list(mrf_exact._STRUCTURES.values())[-1].plan, "opt_cost", 0),
           "calls_per_timing": per_call}
    for kind in kinds:
        med = {w: statistics.median(times[kind, w]) for w in ways}
        ref = answers[kind, "plain_pyro"]
        res[kind] = {**{f"{w}_s_per_model": med[w] for w in ways},
                     **{f"speedup_vs_{w}": med[w] / med["hybridpgm"] for w in ways if w != "hybridpgm"}}
        diffs = {}
        for w in ways:
            got = answers[kind, w] if kind == "marginals" else (answers[kind, w],)
            want = ref if kind == "marginals" else (ref,)
            n = 1 if w == "pgmpy" else B  # pgmpy answers the first model
            diffs[w] = max(float((a[:n] - b[:n]).abs().max()) for a, b in zip(got, want))
            # float64 on every side: agreement to 1e-9 relative to the answers' size (log Z grows with the grid)
            scale = max(1.0, max(float(b[:n].abs().max()) for b in want))
            check_agreement(f"{label}: max |{w} - plain Pyro| {kind} / max(1, |plain Pyro|)", diffs[w] / scale,
                            tolerance(want[0].dtype))
        res[kind]["max_abs_diff_vs_plain_pyro"] = diffs
    print(label, {k: {w: round(v, 2) for w, v in res[k].items() if w.startswith("speedup")} for k in kinds})
    return res


def main(args) -> dict:
    prepare_torch(args)
    warnings.filterwarnings("ignore", module="pgmpy")
    found = dict(bn_contract.PROBABILITY_FLOOR)
    try:
        results = [bench(*workload, args, found) for workload in workloads(args)]
    finally:
        bn_contract.PROBABILITY_FLOOR.clear()
        bn_contract.PROBABILITY_FLOOR.update(found)
    reference = {"plain_pyro": "pyro.ops.einsum.contract, backend pyro.ops.einsum.torch_log, one log-space einsum "
                               "over all log-potentials per call; marginals by autograd",
                 "pgmpy": "pgmpy.inference.BeliefPropagation (junction tree, exact): calibrate, log of a clique "
                          "belief's sum, clique beliefs summed down to each variable",
                 "log_space": "hybridpgm with float64 removed from the probability-space floors"}
    return write_interleaved("mrf_exact", args, reference, "the ways' order reversed every other round; seconds "
                             "per model", results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[4, 6, 8, 10, 12, 14], help="Ising grid sides")
    p.add_argument("--batched-side", type=int, default=8)
    p.add_argument("--batch", type=int, default=16, help="models in the batched Ising workload (1: none)")
    p.add_argument("--potts-side", type=int, default=6, help="3-state Potts grid side (0: none)")
    p.add_argument("--pgmpy-max-side", type=int, default=6,
                   help="largest grid side given to pgmpy (an 8x8 grid takes it 5-20 s per call)")
    p.add_argument("--pgmpy-potts", action="store_true",
                   help="pgmpy on the Potts grid too (a 6x6 grid took it 5 s to minutes per call, by process)")
    add_interleaved_arguments(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto (pgmpy runs on the CPU)")
    p.add_argument("--out", default=None, help="JSON path (default results/mrf_exact.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
