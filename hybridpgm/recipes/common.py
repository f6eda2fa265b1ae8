"""Pieces every command-line recipe shares: arguments, output folder, report."""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from hybridpgm.train import FitResult, fit
from hybridpgm.train.distributed import current

__all__ = ["add_common_arguments", "machine_description", "train", "write_metrics"]


def add_common_arguments(parser: argparse.ArgumentParser, *, epochs: int, batch_size: int) -> None:
    """Flags of ``hybridpgm train <model>`` shared by every model family."""
    from hybridpgm.data import DATASETS

    parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS), help="data set (default: digits)")
    parser.add_argument("--data-root", default=None, help="folder holding the data set's files")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"passes over the data (default {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"examples per step (default {batch_size})")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                        help="mixed precision (default: full fp32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<model>-<dataset>)")
    parser.add_argument("--resume", action="store_true", help="resume from the checkpoint in --out")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def machine_description() -> dict[str, Any]:
    """Where a run or benchmark ran: for JSON reports."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    """Write ``out/metrics.json`` atomically."""
    path = out / "metrics.json"
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def train(objective: Any, data: Any, args: argparse.Namespace, out: Path, optim: Any = None,
          callbacks: tuple = ()) -> tuple[FitResult, float]:
    """Run :func:`hybridpgm.fit` with the common flags, checkpointing to
    ``out/checkpoint.pt`` (started afresh unless ``--resume``).  ``optim``
    defaults to Adam with ``--lr``.  Returns the result and the training wall
    time in seconds."""
    context = current()
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume and context.is_main:
        checkpoint.unlink()
    context.barrier()
    started = time.perf_counter()
    result = fit(objective, data, epochs=args.epochs, batch_size=args.batch_size, accumulate=args.accumulate,
                 optim=optim or functools.partial(torch.optim.Adam, lr=args.lr), precision=args.precision,
                 device=args.device, seed=args.seed, checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                 resume=args.resume, progress=not args.no_progress, callbacks=callbacks)
    return result, time.perf_counter() - started
