"""Shared helpers of the benchmark scripts: timing statistics and JSON output."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from hybridpgm.recipes.common import machine_description

RESULTS = Path(__file__).resolve().parent / "results"


def prepare_torch(args: Any) -> None:
    """Apply the scripts' shared ``--threads`` (0: torch's default) and resolve ``--device auto``."""
    import torch

    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"


def timed(fn: Any, device: Any) -> tuple[float, Any]:
    """``(seconds, result)`` of one call of ``fn``, with the device synchronised
    on both sides on CUDA so the time covers the queued kernels."""
    import torch

    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def write_result(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    """Write ``payload`` plus the machine's description to ``results/<name>.json``."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_description(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
