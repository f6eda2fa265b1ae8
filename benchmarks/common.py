"""Shared helpers of the benchmark scripts: timing statistics and JSON output."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from hybridpgm.recipes.common import machine_description
from hybridpgm.train.atomic_write import write_text_atomically

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


def tolerance(dtype: Any) -> float:
    """The relative agreement tolerance of two implementations computing in ``dtype``: 1e-9 for float64, 1e-4
    for float32 (each side's rounding, compounded over the operations of one step, stays well below these;
    half precisions 1e-2)."""
    import torch

    dtype = getattr(dtype, "dtype", dtype)
    return {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 1e-2)


def relative_error(ours: Any, reference: Any) -> float:
    """``max |ours - reference| / max |reference|`` over all entries (the absolute error where the reference
    is all zero); ``inf`` where the shapes differ or a value is not finite."""
    import torch

    a, b = torch.as_tensor(ours).double().cpu(), torch.as_tensor(reference).double().cpu()
    if a.shape != b.shape:
        return math.inf
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    err = diff / scale if scale > 0 else diff
    return err if math.isfinite(err) else math.inf


def check_agreement(quantity: str, value: float, tol: float) -> float:
    """Raise ``RuntimeError`` naming ``quantity``, its ``value`` and ``tol`` unless ``value <= tol`` (so a NaN
    fails too): a benchmark whose sides disagree measures nothing; returns ``value``."""
    if not value <= tol:
        raise RuntimeError(f"the benchmarked sides disagree: {quantity} = {value:.3g} exceeds the tolerance "
                           f"{tol:.3g}")
    return value


def median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def interleaved_ways(kinds: dict, ways: dict, use: Any, args: Any, rows: int, device: Any = "cpu",
                     count: Any = None) -> tuple[dict, dict, dict, dict]:
    """Time each query of ``kinds`` (name -> call) every way of ``ways`` (name -> setting, applied by
    ``use(setting)``) in interleaved rounds: the ways alternate first from round to round, each timing is the
    mean of as many calls as fill ``args.min_timing_s`` (at most ``args.max_calls``; sized on a call after a warm
    one), per row of ``rows``, over ``args.rounds`` rounds.  ``count()``, if given, is read around each timing
    (page faults, say) and its change per call recorded.

    :returns: ``(answers, seconds, counts, calls)``: the ``(kind, way)`` -> answer of the sizing call, list of
        seconds per row, list of counts per call; kind -> calls per timing.
    """
    answers, calls = {}, {}
    for kind, fn in kinds.items():
        for way in ways:
            use(ways[way])
            fn()  # plan searches, caches and buffers made
            took, answers[kind, way] = timed(fn, device)
            calls[kind] = max(1, min(args.max_calls, -int(-args.min_timing_s // max(took, 1e-9))))
    seconds = {(kind, way): [] for kind in kinds for way in ways}
    counts = {(kind, way): [] for kind in kinds for way in ways}
    for r in range(args.rounds):
        for kind, fn in kinds.items():
            for way in (list(ways) if r % 2 == 0 else list(reversed(ways))):
                use(ways[way])
                c0 = count() if count else 0

                def repeat(fn=fn, n=calls[kind]):
                    for _ in range(n):
                        fn()

                took, _ = timed(repeat, device)
                seconds[kind, way].append(took / calls[kind] / rows)
                counts[kind, way].append(((count() if count else 0) - c0) / calls[kind])
    return answers, seconds, counts, calls


def add_interleaved_arguments(p: Any, rounds: int = 5) -> None:
    """The options of an :func:`interleaved_ways` benchmark: ``--rounds``, ``--min-timing-s``, ``--max-calls``,
    ``--seed`` and ``--threads``."""
    p.add_argument("--rounds", type=int, default=rounds, help="interleaved timing rounds (medians)")
    p.add_argument("--min-timing-s", type=float, default=0.05,
                   help="each timing is the mean of as many calls as fill this long (after a warm call)")
    p.add_argument("--max-calls", type=int, default=20, help="at most this many calls per timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")


def write_interleaved(name: str, args: Any, reference: Any, order: str, results: list) -> dict:
    """Write the results of an :func:`interleaved_ways` benchmark (``results/<name>.json``, or ``args.out``) with
    its named ``reference``, the protocol (``order``: which ways alternate, and how), the device, the load
    average, and the arguments; returns the payload."""
    payload = {"reference": reference,
               "protocol": f"one process; interleaved rounds ({order}), each timing the mean of calls_per_timing "
                           "calls; medians over the rounds",
               "device": str(getattr(args, "device", "cpu")),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "args": vars(args), "results": results}
    write_result(name, payload, args.out)
    return payload


def write_result(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    """Write ``payload`` plus the machine's description to ``results/<name>.json`` (or ``out``), atomically
    (:func:`~hybridpgm.train.atomic_write.write_text_atomically`: a failed write leaves no temporary file and
    keeps the previous result; it raises :class:`~hybridpgm.errors.CheckpointError` naming the file and the OS
    reason)."""
    path = Path(out) if out else RESULTS / f"{name}.json"  # its folders are created by the write
    record = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_description(), **payload}
    write_text_atomically(path, json.dumps(record, indent=2) + "\n", "benchmark result")  # no partial file left
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
