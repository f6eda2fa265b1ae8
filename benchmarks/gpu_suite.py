"""Every speed benchmark on one device, at the sizes that matter on a GPU (driven by ``gpu.sh``).

Each benchmark runs in this process through its own ``parse_args`` / ``main``
with the arguments below and writes its JSON (with the machine and device
name) into ``--out``; this driver adds ``gpu_suite.json`` with the wall time of
each.  The PGMax reference needs JAX on the same device, so on CUDA loopy BP
runs without it (its CPU comparison is ``bp_vs_pgmax.py`` on CPU).  The
2-process NCCL run needs two GPUs and is skipped otherwise.

``--dry-run`` runs the same list on the CPU at tiny sizes into a temporary
directory, so CI notices when a benchmark's interface or code path rots.  On a
device no benchmark starts after ``--budget-minutes`` (7 by default: the
suite's 8 minutes, with the last one running); the ones left out are listed
as skipped in ``gpu_suite.json``.

    bash benchmarks/gpu.sh              # on a CUDA machine: JSON in benchmarks/results/gpu/
    bash benchmarks/gpu.sh --dry-run    # CPU, seconds
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (name, module, full-size arguments, dry-run arguments); ``--device`` and ``--out`` are added.  First a
#: smoke run of every CLI recipe on the device (not a timing); the BN batches (100k rows, then barley) and the
#: GP scaling curve, the longest, go last, so that a device lent for a few minutes returns the others.
SUITE = [
    ("recipes", "recipes_on_device", [], ["--only", "vae"]),
    ("bp_grid", "bp_vs_pgmax",
     ["--no-pgmax", "--sizes", "128", "512", "--batches", "16", "--rounds", "5", "--threads", "0"],
     ["--no-pgmax", "--sizes", "4", "--batches", "2", "--rounds", "1", "--iters", "3"]),
    ("crf_speed", "crf_speed",
     ["--shapes", "256x512x50", "--rounds", "5", "--threads", "0"],
     ["--shapes", "2x5x3", "--rounds", "1"]),
    ("vae_step", "vae_step",
     ["--batch-size", "1024", "--rounds", "5"],
     ["--batch-size", "8", "--x-dim", "16", "--hidden", "8", "--z-dim", "2", "--steps", "2", "--rounds", "1"]),
    ("rbm_speed", "rbm_speed",
     ["--num-examples", "60000", "--rounds", "3", "--skip-sklearn", "--threads", "0"],
     ["--dataset", "digits", "--num-examples", "200", "--hidden", "8", "--rounds", "1", "--skip-sklearn"]),
    ("dkl_step", "dkl_step",
     ["--n", "64000", "--rounds", "5", "--steps", "1", "--threads", "0"],  # 6 s an iteration on an H200
     ["--n", "64", "--hidden", "8", "--grid-size", "16", "--steps", "1", "--rounds", "1", "--warmup", "0"]),
    ("bn_float32", "bn_float32",
     ["--networks", "alarm,hailfinder,water", "--rows", "10000", "--rounds", "5", "--threads", "0"],
     ["--networks", "asia", "--rows", "4", "--rounds", "1", "--min-timing-s", "0", "--max-calls", "1"]),
    ("mrf_exact", "mrf_exact",
     ["--sides", "8", "12", "16", "--batched-side", "12", "--batch", "256", "--potts-side", "8",
      "--pgmpy-max-side", "0", "--rounds", "5", "--threads", "0"],
     ["--sides", "3", "--batched-side", "3", "--batch", "2", "--potts-side", "2", "--pgmpy-max-side", "3",
      "--rounds", "1", "--min-timing-s", "0", "--max-calls", "1"]),
    ("mrf_sample", "mrf_sample",
     ["--sides", "5", "12", "16", "--potts-side", "8", "--samples", "100000", "--pyro-max-side", "5",
      "--sequential-max-side", "0", "--rounds", "5", "--threads", "0"],
     ["--sides", "2", "--potts-side", "2", "--samples", "10", "--pyro-max-side", "2", "--sequential-max-side", "2",
      "--rounds", "1", "--min-timing-s", "0", "--max-calls", "1"]),
    ("bn_sample", "bn_sample",
     ["--networks", "child,alarm", "--rows", "10000", "--samples", "100000", "--row-samples", "10", "--rounds", "5",
      "--threads", "0"],
     ["--networks", "asia", "--rows", "4", "--samples", "10", "--row-samples", "2", "--rounds", "1",
      "--min-timing-s", "0", "--max-calls", "1"]),
    ("bn_inference", "bn_inference",
     ["--networks", "asia,alarm,child,insurance,hepar2,win95pts,water,hailfinder", "--rows", "100000",
      "--rounds", "5", "--pgmpy-rows", "0", "--same-pattern-rows", "2", "--threads", "0", "--junction-tree-rows", "0"],
     ["--networks", "asia", "--rows", "8", "--rounds", "1", "--pgmpy-rows", "0"]),
    ("bn_inference_barley", "bn_inference",
     ["--networks", "barley", "--rows", "1000", "--rounds", "5", "--pgmpy-rows", "0", "--threads", "0",
      "--junction-tree-rows", "0"],
     ["--networks", "cancer", "--rows", "4", "--rounds", "1", "--pgmpy-rows", "0"]),
    ("dkl_scaling", "gp_scaling",
     ["--sizes", "16000", "64000", "--exact-max", "16000", "--iters", "3", "--threads", "0"],
     ["--sizes", "64", "--exact-max", "64", "--grid-size", "16", "--iters", "1", "--warmup", "0"]),
]


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    from hybridpgm.recipes.common import machine_description
    return machine_description()["cpu_model"] or platform.machine()


def run_suite(dry_run: bool, out: Path, device: str, only: list[str] | None = None,
              budget_s: float = math.inf) -> dict:
    """Run the suite's benchmarks in order; one not yet started when ``budget_s`` seconds have passed is
    recorded as skipped (each benchmark's JSON is written as soon as it ends)."""
    sys.path.insert(0, str(HERE))
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": device, "device_name": _device_name(device), "dry_run": dry_run,
               "budget_s": budget_s if math.isfinite(budget_s) else None, "benchmarks": {}}
    start = time.perf_counter()
    for name, module, full, dry in SUITE:
        if only and name not in only:
            continue
        argv = (dry if dry_run else full) + ["--device", device, "--out", str(out / f"{name}.json")]
        if time.perf_counter() - start >= budget_s:
            print(f"== {name}: skipped, the suite's {budget_s:.0f} s budget is spent", flush=True)
            summary["benchmarks"][name] = {"status": "skipped (budget)", "wall_s": 0.0, "argv": argv}
            continue
        print(f"== {name}: {module}.py {' '.join(argv)}", flush=True)
        t = time.perf_counter()
        try:
            mod = importlib.import_module(module)
            mod.main(mod.parse_args(argv))
            status = "ok"
        except Exception:  # keep going: one broken benchmark must not hide the others
            traceback.print_exc()
            status = "failed"
        summary["benchmarks"][name] = {"status": status, "wall_s": time.perf_counter() - t, "argv": argv}
    summary["nccl_2proc"] = _ddp(dry_run, out, device)
    (out / "gpu_suite.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _ddp(dry_run: bool, out: Path, device: str) -> dict:
    import torch

    if dry_run or not device.startswith("cuda") or torch.cuda.device_count() < 2:
        return {"status": "skipped", "reason": "needs two CUDA devices (not run in --dry-run)"}
    t = time.perf_counter()
    import subprocess
    rc = subprocess.run([sys.executable, str(HERE / "ddp_scaling.py"), "--device", "cuda",
                         "--out", str(out / "ddp_scaling.json")]).returncode
    return {"status": "ok" if rc == 0 else f"failed (exit {rc})", "wall_s": time.perf_counter() - t}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, temporary output")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    p.add_argument("--out", default=None, help="output directory (default results/gpu, or a temp dir)")
    p.add_argument("--only", nargs="+", default=None, help="run only these suite entries")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no benchmark after this many minutes (default: 7 on a device, none with --dry-run)")
    args = p.parse_args(argv)
    device = args.device or ("cpu" if args.dry_run else "cuda")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            print("gpu_suite: CUDA is not available; use --dry-run on a CPU machine", file=sys.stderr)
            return 2
    if args.out:
        out = Path(args.out)
    elif args.dry_run:
        out = Path(tempfile.mkdtemp(prefix="hybridpgm-gpu-dry-run-"))
    else:
        out = HERE / "results" / "gpu"
    minutes = args.budget_minutes if args.budget_minutes is not None else (None if args.dry_run else 7.0)
    budget_s = math.inf if minutes is None else 60.0 * minutes
    summary = run_suite(args.dry_run, out, device, args.only, budget_s)
    failed = [k for k, v in summary["benchmarks"].items() if v["status"] == "failed"]
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'gpu_suite.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
