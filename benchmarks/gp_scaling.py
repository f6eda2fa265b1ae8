"""Seconds per training iteration of deep kernel learning: KISS-GP against an
exact GP, as the number of training points grows.

Both models are :class:`hybridpgm.gp.DeepKernelGP` with the same MLP feature
extractor on windows of :func:`hybridpgm.data.synthetic_series`, trained by
:func:`hybridpgm.fit` on the full-batch exact marginal likelihood
(:class:`hybridpgm.gp.ExactMLLObjective`); one iteration is a forward pass,
the backward pass and an Adam step.  The reference is the same model without
grid interpolation (GPyTorch's exact GP: BBMM conjugate gradients above
``max_cholesky_size``, or Cholesky with ``--exact-cholesky``), run up to
``--exact-max`` points.  Target: KISS-GP time grows at most ~linearly (ratio
<= 5 per 4x n).

    python benchmarks/gp_scaling.py --sizes 1000 4000 16000 64000 --exact-max 4000
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import sys
import warnings
from pathlib import Path

import gpytorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import hybridpgm  # noqa: E402
from hybridpgm.data import make_windows, synthetic_series  # noqa: E402
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective  # noqa: E402
from hybridpgm.nn import mlp  # noqa: E402


def seconds_per_iteration(n: int, grid_size: int | None, args) -> float:
    series = synthetic_series(n + args.window, period=23.0, noise=0.1, seed=args.seed).float()
    x, y = make_windows(series, args.window)
    x = x[:, :, 0]
    torch.manual_seed(args.seed)
    model = DeepKernelGP(x, y, mlp([args.window, 32, args.features], activation="tanh"), grid_size=grid_size)
    settings = (gpytorch.settings.max_cholesky_size(10**9) if args.exact_cholesky and grid_size is None
                else contextlib.nullcontext())
    with settings:
        result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=n, epochs=args.warmup + args.iters,
                               device=args.device, seed=args.seed, progress=False, shuffle=False,
                               optim=functools.partial(torch.optim.Adam, lr=0.01))
    times = result.history.wall_time
    per_step = [b - a for a, b in zip([0.0] + times[:-1], times)][args.warmup:]
    return statistics.median(per_step)


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    rows = []
    for n in args.sizes:
        row = {"n": n, "kiss_gp_s": seconds_per_iteration(n, args.grid_size, args)}
        if n <= args.exact_max:
            row["exact_gp_s"] = seconds_per_iteration(n, None, args)
            row["exact_over_kiss"] = row["exact_gp_s"] / row["kiss_gp_s"]
        rows.append(row)
        print(row, flush=True)
    for prev, row in zip(rows, rows[1:]):
        factor = row["n"] / prev["n"]
        row["kiss_growth_per_4x"] = (row["kiss_gp_s"] / prev["kiss_gp_s"]) ** (math.log(4) / math.log(factor))
        if "exact_gp_s" in row and "exact_gp_s" in prev:
            row["exact_growth_per_4x"] = (row["exact_gp_s"] / prev["exact_gp_s"]) ** (math.log(4) / math.log(factor))
    payload = {
        "what": "seconds per full-batch training iteration (forward, backward, Adam) of DeepKernelGP",
        "reference": "same DeepKernelGP without grid interpolation (GPyTorch exact GP, "
                     + ("Cholesky" if args.exact_cholesky else "default BBMM/CG settings") + ")",
        "config": {"grid_size": args.grid_size, "features": args.features, "window": args.window,
                   "iters": args.iters, "warmup": args.warmup, "threads": torch.get_num_threads()},
        "target": "kiss_growth_per_4x <= 5",
        "rows": rows,
        "max_kiss_growth_per_4x": max((r["kiss_growth_per_4x"] for r in rows[1:]), default=None),
    }
    write_result("gp_scaling", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--exact-max", type=int, default=4000, help="largest n for the exact GP")
    parser.add_argument("--exact-cholesky", action="store_true", help="exact GP by Cholesky instead of BBMM")
    parser.add_argument("--grid-size", type=int, default=100)
    parser.add_argument("--features", type=int, default=1)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gp_scaling.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
