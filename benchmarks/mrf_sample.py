"""Exact MRF samples: one contraction and backward sampling, against plain Pyro's ``infer_discrete``.

``MarkovNet.sample(n, method="exact")`` (:func:`hybridpgm.infer.mrf_exact.exact_sample`: one log-space contraction
on the cached plan, then backward sampling along its steps) against

* **plain Pyro**: ``pyro.infer.infer_discrete(..., temperature=1)`` on ``MarkovNet.model()`` inside a
  ``pyro.plate`` of ``n`` samples, what a Pyro user writes for exact samples of an enumerated model.  Pyro gives
  every enumerated variable its own tensor dim, and PyTorch allows 64, so it runs up to 7x7 grids
  (``--pyro-max-side``);
* **sequential**: one exact contraction per variable, conditioning on the variables drawn so far (what
  hybridpgm ran before), up to ``--sequential-max-side`` (an 8x8 grid takes it about a second for 100
  samples).

All ways run in one process in interleaved rounds (``common.interleaved_ways``: the order reversed every other
round, each timing the mean of as many calls as fill ``--min-timing-s``, medians over ``--rounds``), one torch
thread, float64, on random Ising grids (couplings ``N(0, 0.5^2)``, fields ``N(0, 1)``) and a 3-state Potts
grid; times are per sample.  Each way's samples are checked against the exact marginals: the largest
``|frequency - p| / sqrt(p (1 - p) / n)`` over every variable and state is written as ``max_z``, and the script
raises when any state's ``|frequency - p|`` exceeds its Bernstein bound (:func:`frequency_bounds`: a correct
sampler crosses one of them with probability below 1e-6, whatever ``n``).

    python benchmarks/mrf_sample.py            # -> results/mrf_sample.json
"""

from __future__ import annotations

import argparse
import math
import statistics

import pyro
import torch
from pyro.infer import infer_discrete

from common import add_interleaved_arguments, interleaved_ways, prepare_torch, write_interleaved

from hybridpgm.graphs import grid_edges, ising_grid, potts_grid
from hybridpgm.infer import mrf_exact

WAYS = ("hybridpgm", "plain_pyro", "sequential")


def plain_pyro_sample(mrf, num_samples: int) -> torch.Tensor:
    """``[n, V]`` samples from ``infer_discrete`` (temperature 1) on the MRF's Pyro model."""
    def sampler():
        with pyro.plate("samples", num_samples, dim=-1):
            return mrf.model()

    xs = infer_discrete(sampler, first_available_dim=-2, temperature=1)()
    return torch.stack([xs[v] for v in mrf.cards], -1)


def sequential_sample(fg, num_samples: int) -> torch.Tensor:
    """``[n, V]`` samples of the first model by sequential conditioning: :math:`x_v \\sim p(x_v \\mid x_{<v})`, one
    exact marginal contraction of all ``n`` conditioned copies per variable."""
    V, C = fg.num_vars, fg.num_states
    unary = fg.unary[:1].expand(num_samples, V, C)
    valid = fg.valid[:1].expand(num_samples, V, C).clone()
    groups = [type(g)(g.variables, g.log_potentials[:1].expand((num_samples,) + g.log_potentials.shape[1:]))
              for g in fg.groups]
    cond = type(fg)(fg.names, fg.cardinalities, unary, valid, groups, fg.colors)
    out = torch.zeros(num_samples, V, dtype=torch.long, device=unary.device)
    for v in range(V):
        _, marg = mrf_exact.exact_marginals(cond)
        out[:, v] = torch.multinomial(marg[:, v], 1).squeeze(-1)
        cond.valid[:, v] = torch.nn.functional.one_hot(out[:, v], C).bool()
    return out


def max_z(samples: torch.Tensor, marginals: torch.Tensor) -> float:
    """The largest ``|frequency - p| / sqrt(p (1 - p) / n)`` over variables and states of positive ``p < 1``."""
    n, C = samples.shape[0], marginals.shape[1]
    freq = torch.nn.functional.one_hot(samples, C).double().mean(0)  # [V, C]
    p = marginals.double()
    ok = (p > 0) & (p < 1)
    z = (freq - p).abs()[ok] / (p * (1 - p) / n).sqrt()[ok]
    return float(z.max()) if z.numel() else 0.0


#: the probability that a correct sampler fails :func:`check_frequencies` on one model (all ways and states)
FALSE_ALARM = 1e-6


def frequency_bounds(marginals: torch.Tensor, n: int, tests: int) -> torch.Tensor:
    """``[V, C]`` bounds on ``|frequency - p|`` of ``n`` independent exact samples that all ``tests`` states
    together cross with probability below :data:`FALSE_ALARM`.

    A fixed z-score bound (``max_z < 5``, say) rests on the normal approximation, which fails for the sample
    sizes this script also runs (10 samples in the GPU suite's dry run, 50 in the tests: a state of p = 0.01
    seen once in 10 samples has z = 2.9, twice z = 6.1) and for hundreds of states tested at once.  Bernstein's
    inequality holds at every ``n``: the mean of ``n`` indicators of variance ``v = p (1 - p)`` strays by ``t``
    with probability at most ``2 exp(-n t^2 / (2 (v + t / 3)))``; with that set to ``FALSE_ALARM / tests``
    (a union bound), ``t = (L / 3 + sqrt(L^2 / 9 + 2 n L v)) / n`` with ``L = log(2 tests / FALSE_ALARM)``.
    At 1000 samples and ``p = 1/2`` on a 14x14 grid that is 6.9 standard errors, at 100,000 samples 6.6.
    """
    L = math.log(2 * tests / FALSE_ALARM)
    v = (marginals * (1 - marginals)).double().clamp(min=0)
    return (L / 3 + (L * L / 9 + 2 * n * L * v).sqrt()) / n


def check_frequencies(label: str, answers: dict, marginals: torch.Tensor) -> dict:
    """``way -> max |frequency - p| / bound`` (:func:`frequency_bounds`) over variables and states; raises
    ``RuntimeError`` naming the way, the state, its frequency, ``p``, the bound and ``max_z`` where it is
    above 1 (the way does not sample the model's joint, so its speed-up compares different work)."""
    p = marginals.double()
    V, C = p.shape
    out = {}
    for way, samples in answers.items():
        n = samples.shape[0]
        freq = torch.nn.functional.one_hot(samples, C).double().mean(0)
        bound = frequency_bounds(p, n, V * C * len(answers))
        excess = (freq - p).abs() / bound
        out[way] = float(excess.max())
        if not out[way] <= 1.0:
            v, c = divmod(int(excess.argmax()), C)
            raise RuntimeError(f"{label}: {way}'s samples disagree with the exact marginals: variable {v} state "
                               f"{c} has frequency {float(freq[v, c]):.4f} in {n} samples against p = "
                               f"{float(p[v, c]):.4f}; |frequency - p| = {float((freq - p).abs()[v, c]):.3g} exceeds "
                               f"the tolerance {float(bound[v, c]):.3g} (false alarm {FALSE_ALARM:g}; max_z = "
                               f"{max_z(samples, marginals):.2f})")
    return out


def workloads(args) -> list:
    """``(label, MarkovNet, plain Pyro too, sequential too)``: Ising grids of ``--sides``, a Potts grid."""
    g = torch.Generator().manual_seed(args.seed)
    out = []
    for n in args.sides:
        J = 0.5 * torch.randn(len(grid_edges(n, n)), generator=g, dtype=torch.float64)
        h = torch.randn(n * n, generator=g, dtype=torch.float64)
        out.append((f"ising {n}x{n}", ising_grid(n, n, J, h), n <= args.pyro_max_side,
                    n <= args.sequential_max_side))
    if args.potts_side:
        n = args.potts_side
        theta = torch.randn(n * n, 3, generator=g, dtype=torch.float64)
        out.append((f"potts3 {n}x{n}", potts_grid(n, n, 3, 0.5, theta), n <= args.pyro_max_side,
                    n <= args.sequential_max_side))
    return out


def bench(label, mrf, with_pyro, with_sequential, args) -> dict:
    mrf = mrf.to(args.device)
    fg = mrf.factor_graph()
    n = args.samples
    ways = [w for w in WAYS if (w != "plain_pyro" or with_pyro) and (w != "sequential" or with_sequential)]
    current = {}

    def run():
        way = current["way"]
        if way == "plain_pyro":
            return plain_pyro_sample(mrf, n)
        if way == "sequential":
            return sequential_sample(fg, n)
        return mrf_exact.exact_sample(fg, n)[:, 0]

    with torch.no_grad():
        answers, times, _, per_call = interleaved_ways({"sample": run}, {w: w for w in ways},
                                                       lambda w: current.update(way=w), args, n, args.device)
        _, marginals = mrf_exact.exact_marginals(fg)
    med = {w: statistics.median(times["sample", w]) for w in ways}
    res = {"model": label, "variables": len(mrf.cards), "samples_per_call": n, "calls_per_timing": per_call,
           **{f"{w}_s_per_sample": med[w] for w in ways},
           **{f"speedup_vs_{w}": med[w] / med["hybridpgm"] for w in ways if w != "hybridpgm"},
           "max_z": {w: max_z(answers["sample", w].cpu(), marginals[0].cpu()) for w in ways},
           "max_frequency_error_over_bound": check_frequencies(
               label, {w: answers["sample", w].cpu() for w in ways}, marginals[0].cpu())}
    print(label, {k: round(v, 2) for k, v in res.items() if k.startswith("speedup")}, res["max_z"])
    return res


def main(args) -> dict:
    prepare_torch(args)
    results = [bench(*workload, args) for workload in workloads(args)]
    reference = {"plain_pyro": "pyro.infer.infer_discrete(temperature=1) on MarkovNet.model() in a plate of n "
                               "samples (forward filtering, backward sampling over Pyro's enumerated dims)",
                 "sequential": "one exact marginal contraction per variable, conditioning on those drawn "
                               "(hybridpgm's previous exact sampler)"}
    return write_interleaved("mrf_sample", args, reference, "the ways' order reversed every other round; seconds "
                             "per sample", results)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[3, 5, 7, 10, 14], help="Ising grid sides")
    p.add_argument("--potts-side", type=int, default=5, help="3-state Potts grid side (0: none)")
    p.add_argument("--samples", type=int, default=1000, help="samples per call")
    p.add_argument("--pyro-max-side", type=int, default=7,
                   help="largest grid side given to infer_discrete (one tensor dim per variable: 64 at most)")
    p.add_argument("--sequential-max-side", type=int, default=5,
                   help="largest grid side sampled by sequential conditioning")
    add_interleaved_arguments(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto")
    p.add_argument("--out", default=None, help="JSON path (default results/mrf_sample.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
