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

Each iteration is timed by a ``fit`` callback (:class:`SynchronisedClock`) with the device synchronised before
the clock is read, at the start and after every step: on CUDA the time covers the step's queued kernels (the
Adam update included), not only their launches, which ``history.wall_time`` (read off the host clock without a
synchronisation) would time.  On the CPU there is nothing to wait for, and the times are the same steps'.

    python benchmarks/gp_scaling.py --sizes 1000 4000 16000 64000 --exact-max 4000
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import sys
import time
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
from hybridpgm.train.callbacks import Callback  # noqa: E402
from hybridpgm.train.device import resolve_device  # noqa: E402


_clock = time.perf_counter  # the clock the steps are read off (a name of its own: tests replace it)


def _sync(device: torch.device) -> None:
    """Wait for ``device``'s queued kernels (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SynchronisedClock(Callback):
    """``fit``'s per-step seconds, read between device synchronisations: from ``on_fit_start`` (or the previous
    step's end) to the next ``on_step_end``, ``device`` synchronised before each reading of the clock.  That is
    the whole loop iteration: batch, forward, backward, update, loss read back and the loop's bookkeeping."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: list[float] = []
        self.last: float | None = None

    def on_fit_start(self, start) -> None:
        _sync(self.device)
        self.last = _clock()

    def on_step_end(self, info) -> None:
        _sync(self.device)
        now = _clock()
        self.times.append(now - self.last)
        self.last = now


def seconds_per_iteration(n: int, grid_size: int | None, args) -> float:
    series = synthetic_series(n + args.window, period=23.0, noise=0.1, seed=args.seed).float()
    x, y = make_windows(series, args.window)
    x = x[:, :, 0]
    torch.manual_seed(args.seed)
    model = DeepKernelGP(x, y, mlp([args.window, 32, args.features], activation="tanh"), grid_size=grid_size)
    settings = (gpytorch.settings.max_cholesky_size(10**9) if args.exact_cholesky and grid_size is None
                else contextlib.nullcontext())
    clock = SynchronisedClock(resolve_device(args.device))
    with settings:
        hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=n, epochs=args.warmup + args.iters,
                      device=args.device, seed=args.seed, progress=False, shuffle=False, callbacks=[clock],
                      optim=functools.partial(torch.optim.Adam, lr=0.01))
    return statistics.median(clock.times[args.warmup:])


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
