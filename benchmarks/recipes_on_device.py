"""Every ``hybridpgm train`` recipe for a few steps on one device, resumed, then ``evaluate``, ``sample`` and a reload.

Not a timing: a check that each model family's code path runs on the device a
user trains on (CUDA above all), written to JSON like the benchmarks so a
device session brings it back.  Each recipe is trained with tiny arguments
through :func:`hybridpgm.cli.main` (so a failure is what a user would see: one
line and exit 2, or a traceback), resumed from its checkpoint for one epoch
more (``--resume``), then its run folder is scored again
(``evaluate``), sampled from (``sample``) and its ``model.pt`` loaded with
:func:`hybridpgm.load`.  The JSON records, per recipe and step, the exit code,
the wall time, and the last line written to stderr or the traceback.

    python benchmarks/recipes_on_device.py --device cuda
    python benchmarks/recipes_on_device.py --device cpu --only vae crf
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
import time
import traceback
from pathlib import Path

from common import write_result

TINY_VAE = ["--epochs", "1", "--batch-size", "256", "--latent-dim", "2", "--hidden", "8", "--eval-samples", "2",
            "--eval-size", "4"]
GAN_RUN = ["--epochs", "1", "--batch-size", "256", "--eval-samples", "50", "--classifier-steps", "5"]
TINY_GAN = [*GAN_RUN, "--hidden", "16"]
DEEP = ["--epochs", "1", "--batch-size", "256", "--gibbs-steps", "5"]

#: (label, model, training arguments); ``--device``, ``--out`` and ``--no-progress`` are added.
RECIPES = [
    ("vae", "vae", TINY_VAE),
    ("iwae", "iwae", TINY_VAE),
    ("sbn-nvil", "sbn", ["--objective", "nvil", "--hidden", "8", "--epochs", "1", "--batch-size", "256",
                         "--eval-samples", "4", "--eval-size", "16"]),
    ("sbn-vimco", "sbn", ["--objective", "vimco", "--hidden", "8", "--epochs", "1", "--batch-size", "256",
                          "--eval-samples", "4", "--eval-size", "16"]),
    ("sbn-rws", "sbn", ["--objective", "rws", "--hidden", "8", "--epochs", "1", "--batch-size", "256",
                        "--eval-samples", "4", "--eval-size", "16"]),
    ("sbn-wake-sleep", "sbn", ["--objective", "wake-sleep", "--hidden", "8", "--epochs", "1", "--batch-size", "256",
                               "--eval-samples", "4", "--eval-size", "16"]),
    ("rbm", "rbm", ["--epochs", "1", "--hidden", "8", "--ais-chains", "20", "--ais-steps", "50"]),
    ("rbm-pcd", "rbm", ["--epochs", "1", "--hidden", "8", "--ais-chains", "20", "--ais-steps", "50", "--persistent",
                        "--chains", "20"]),
    ("dbn", "dbn", [*DEEP, "--hidden", "8", "6"]),
    ("dbm", "dbm", [*DEEP, "--hidden", "8", "6", "--chains", "10", "--ais-chains", "10", "--ais-steps", "50"]),
    ("crf", "crf", ["--epochs", "2", "--num-train", "300", "--num-test", "100", "--max-len", "12", "--hidden", "8"]),
    ("dkl", "dkl", ["--epochs", "10", "--hidden", "8"]),
    ("gp-lstm", "gp-lstm", ["--epochs", "1", "--hidden", "4", "--window", "6"]),
    ("gan", "gan", TINY_GAN),
    ("gan-conv", "gan", [*GAN_RUN, "--arch", "conv"]),  # the conv networks have fixed widths: no --hidden
    ("iwgan", "iwgan", TINY_GAN),
    ("infogan", "infogan", TINY_GAN),
    ("aavae", "aavae", [*TINY_GAN, "--latent-dim", "3"]),
    ("bayes-net", "bayes-net", ["--epochs", "10", "--num-data", "1000", "--num-test", "300", "--batch-size", "1000",
                                "--lr", "0.1"]),
]


def _call(argv: list[str]) -> dict:
    """Run ``hybridpgm.cli.main(argv)``; its exit code, wall time and last line of stderr (or the traceback)."""
    from hybridpgm.cli import main

    err, out = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except SystemExit as stop:  # argparse refusing an argument: exit 2 and one line, as a user sees it
        rc = stop.code
    except BaseException as error:  # noqa: BLE001 - a traceback is the finding, and the next recipe must run
        if isinstance(error, KeyboardInterrupt):
            raise
        return {"rc": "traceback", "wall_s": time.perf_counter() - start, "stderr_tail": traceback.format_exc(limit=-6)}
    tail = (err.getvalue().strip().splitlines() or [""])[-1]
    return {"rc": rc, "wall_s": time.perf_counter() - start, "stderr_tail": tail}


def _load(path: Path, device: str) -> dict:
    """:func:`hybridpgm.load` of a run's model file: ok, or the error; and whether every tensor is finite."""
    import torch

    import hybridpgm

    start = time.perf_counter()
    try:
        model = hybridpgm.load(path, map_location=device)
        tensors = list(model.state_dict().values()) if hasattr(model, "state_dict") else []
        finite = all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
        return {"rc": 0, "wall_s": time.perf_counter() - start, "type": type(model).__name__, "finite": finite}
    except Exception:  # noqa: BLE001
        return {"rc": "traceback", "wall_s": time.perf_counter() - start, "stderr_tail": traceback.format_exc(limit=-6)}


def run_recipe(label: str, model: str, extra: list[str], device: str, root: Path) -> dict:
    """Train, evaluate, sample and reload one recipe; one dict per step."""
    run = root / label
    row = {"model": model, "args": extra}
    row["train"] = _call(["train", model, *extra, "--device", device, "--no-progress", "--out", str(run)])
    if row["train"]["rc"] != 0:
        return row
    more = list(extra)
    at = more.index("--epochs") + 1
    more[at] = str(int(more[at]) + 1)  # one epoch more, from the checkpoint (its RNG states, on the device)
    row["resume"] = _call(["train", model, *more, "--device", device, "--no-progress", "--out", str(run), "--resume"])
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    row["metrics_finite"] = all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    row["evaluate"] = _call(["evaluate", str(run)])
    from hybridpgm.recipes import RECIPES as CLI_RECIPES

    if getattr(CLI_RECIPES[model][0], "sample", None) is not None:  # crf, dkl and gp-lstm have none
        row["sample"] = _call(["sample", str(run), "--num-samples", "8"])
    row["load"] = _load(run / "model.pt", device)
    return row


def main(args: argparse.Namespace) -> dict:
    import torch

    from hybridpgm.train.device import resolve_device

    device = str(resolve_device(args.device))
    chosen = [r for r in RECIPES if not args.only or r[0] in args.only]
    results = {}
    with tempfile.TemporaryDirectory(prefix="hybridpgm-recipes-") as tmp:
        for label, model, extra in chosen:
            print(f"-- {label}", flush=True)
            results[label] = run_recipe(label, model, extra, device, Path(tmp))
            steps = {k: v["rc"] for k, v in results[label].items() if isinstance(v, dict) and "rc" in v}
            print(f"   {steps}", flush=True)
    failed = sorted(label for label, row in results.items()
                    if any(isinstance(v, dict) and v.get("rc") not in (0, None) for v in row.values())
                    or row.get("metrics_finite") is False
                    or any(isinstance(v, dict) and v.get("finite") is False for v in row.values()))
    payload = {"reference": "none: a smoke check that every recipe trains, evaluates, samples and reloads",
               "device": device, "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda")
               else "cpu", "torch": torch.__version__, "failed": failed, "results": results}
    write_result("recipes_on_device", payload, args.out)
    if failed:  # after the JSON is written: the suite marks this entry failed
        raise RuntimeError(f"recipes that failed on {device}: {failed}")
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--only", nargs="+", default=None, help=f"recipe labels, of {[r[0] for r in RECIPES]}")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/recipes_on_device.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
