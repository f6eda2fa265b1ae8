"""Loopy BP on binary Ising grids: hybridpgm's flat engine against PGMax 0.6.1 (JAX), interleaved.

Both sides run ``--iters`` sum-product steps without damping on the same random
Ising grids (float32) and return the marginals; log Z is not part of the timed
call on either side.  PGMax runs in its own virtual environment (created on
first use, see :func:`ensure_pgmax_venv`) as a child process answering one
command per line (``pgmax_runner.py``), jit-compiled once (compile time
recorded), pinned to one CPU core (XLA's Eigen threads off, the process's CPU
affinity one core).  hybridpgm runs in this process with one torch thread; its
first call (TorchScript compile of the fused loop, once per
process) is recorded apart, and ``--warmup`` further untimed calls on each side
follow (TorchScript profiles its first runs).  Rounds alternate A, B, A, B;
medians are reported with the
ratio ``hybridpgm / PGMax`` (below 1: hybridpgm faster) and the largest
difference between the two sets of marginals, which must stay within float32's
tolerance (1e-4), else the script raises.

    python benchmarks/bp_vs_pgmax.py --sizes 16 64 128 --batches 1 16 --rounds 7
    python benchmarks/bp_vs_pgmax.py --sizes 512 --batches 16 --rounds 5
    python benchmarks/bp_vs_pgmax.py --device cuda --no-pgmax --sizes 512 --batches 16   # GPU: ours only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hybridpgm.graphs import ising_grid
from hybridpgm.graphs.grids import grid_edges
from hybridpgm.infer import BeliefPropagation

from common import check_agreement, prepare_torch, timed, tolerance, write_result

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = Path(os.environ.get("PGMAX_VENV", Path.home() / ".cache" / "hybridpgm" / "pgmax-venv"))
PGMAX_REQUIREMENTS = ["jax", "jaxlib", "numpy", "scipy", "numba", "tqdm", "typing-extensions"]


def ensure_pgmax_venv(venv: Path) -> Path:
    """The python of a virtual environment holding ``pgmax==0.6.1`` and a CPU JAX, created when absent.

    PGMax 0.6.1 declares heavy optional dependencies (TensorFlow, Sphinx, ...)
    as requirements; only what its ``infer`` path imports is installed.
    """
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"creating PGMax environment in {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "pgmax==0.6.1"], check=True)
    subprocess.run(pip + PGMAX_REQUIREMENTS, check=True)
    return python


class PGMax:
    """The PGMax child process."""

    def __init__(self, python: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1", JAX_PLATFORMS="cpu")
        self.proc = subprocess.Popen([str(python), str(HERE / "pgmax_runner.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PGMax runner exited; see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"PGMax runner: {reply['error']}")
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def random_ising(n: int, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    J = 0.3 * torch.randn(batch, len(grid_edges(n, n)), generator=g)
    h = 0.5 * torch.randn(batch, n * n, generator=g)
    return J, h


def bench_one(n: int, batch: int, args, pgmax: PGMax | None, tmp: Path) -> dict:
    device = torch.device(args.device)
    J, h = random_ising(n, batch, args.seed + n + batch)
    fg = ising_grid(n, n, J.to(device), h.to(device)).factor_graph()
    bp = BeliefPropagation(num_iters=args.iters, damping=0.0, tol=0.0)

    def ours():
        with torch.no_grad():
            return timed(lambda: bp(fg).marginals, device)

    row = {"grid": f"{n}x{n}", "batch": batch, "iters": args.iters, "device": str(device),
           "dtype": "float32", "rounds": args.rounds}
    t0 = time.perf_counter()
    _, marg = ours()  # first call: TorchScript compile of the loop (once per process), index structures
    row["hybridpgm_first_call_s"] = time.perf_counter() - t0
    if pgmax is not None:
        npz = tmp / f"grid{n}_b{batch}.npz"
        np.savez(npz, J=J.numpy(), h=h.numpy(), side=n)
        setup = pgmax.ask(cmd="setup", npz=str(npz), iters=args.iters)
        row["pgmax_compile_s"], row["pgmax_cpu_affinity"] = setup["compile_s"], setup.get("cpu_affinity")
    for _ in range(args.warmup):  # untimed, both sides (TorchScript profiles its first runs)
        ours()
        if pgmax is not None:
            pgmax.ask(cmd="time")
    t_ours, t_ref = [], []
    for _ in range(args.rounds):  # A, B, A, B, ...
        t_ours.append(ours()[0])
        if pgmax is not None:
            t_ref.append(pgmax.ask(cmd="time")["seconds"])
    row["hybridpgm_ms"] = 1000 * statistics.median(t_ours)
    row["hybridpgm_ms_all"] = [1000 * t for t in t_ours]
    if pgmax is not None:
        row["pgmax_ms"] = 1000 * statistics.median(t_ref)
        row["pgmax_ms_all"] = [1000 * t for t in t_ref]
        row["ratio_hybridpgm_over_pgmax"] = row["hybridpgm_ms"] / row["pgmax_ms"]
        out = tmp / f"m{n}_b{batch}.npy"
        pgmax.ask(cmd="marginals", out=str(out))
        ref = np.load(out)
        if ref.shape != tuple(marg.shape):
            raise RuntimeError(f"PGMax answered marginals of shape {ref.shape}, hybridpgm {tuple(marg.shape)}")
        # the same float32 sum-product steps from the same messages: marginals (probabilities, at most 1) agree
        # to float32's tolerance, 1e-4 (the committed runs: 2.4e-7); beyond it the ratio compares different work
        row["tolerance_abs"] = tolerance(torch.float32)
        row["max_abs_marginal_diff"] = check_agreement(
            f"max |hybridpgm - PGMax| marginal ({n}x{n}, batch {batch})",
            float(np.abs(marg.cpu().numpy() - ref).max()), row["tolerance_abs"])
    print(json.dumps(row), flush=True)
    return row


def main(args) -> Path:
    prepare_torch(args)
    payload = {"command_args": vars(args), "load_average": os.getloadavg()}
    if args.no_pgmax:  # hybridpgm's times alone (on CUDA, say): no reference and no ratio
        payload["reference"] = "none (--no-pgmax): hybridpgm's times alone"
    else:
        payload["reference"] = "PGMax 0.6.1 (JAX, CPU pinned to one core, jit)"
        payload["ratio"] = "hybridpgm median / PGMax median within one interleaved run (< 1: hybridpgm faster)"
    pgmax = None
    if not args.no_pgmax:
        pgmax = PGMax(ensure_pgmax_venv(Path(args.pgmax_venv)))
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.sizes:
                for b in args.batches:
                    rows.append(bench_one(n, b, args, pgmax, Path(tmp)))
    finally:
        if pgmax is not None:
            pgmax.close()
    payload["load_average_end"] = os.getloadavg()
    payload["rows"] = rows
    return write_result("bp_vs_pgmax", payload, args.out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per side after the first call")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (PGMax always runs on CPU)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--no-pgmax", action="store_true", help="time hybridpgm only (e.g. on a GPU)")
    p.add_argument("--pgmax-venv", default=str(DEFAULT_VENV))
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bp_vs_pgmax.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
