"""Pieces every command-line recipe shares: argument types, output folder, report.

Every recipe writes the same run folder::

    OUT/metrics.json     figures (units in ``metrics["units"]``), versions, command
    OUT/model.pt         the trained model (:func:`hybridpgm.save`; ``hybridpgm.load`` reads it)
    OUT/checkpoint.pt    the training state (:func:`hybridpgm.fit`'s checkpoint)
    OUT/loss.png         loss curves, plus the family's own plots

Arguments are checked before anything runs: a bad number, a missing
``--data-root``, a device this machine lacks, an output path that cannot be a
folder, or a checkpoint state that does not match ``--resume``/``--overwrite``
is a one-line ``hybridpgm: error: ...`` and exit status 2 (:mod:`hybridpgm.recipes.run_folder`: the folder and
the checkpoint flags, ``--resume auto`` for a job a scheduler requeues).

Every recipe passes its *run configuration* (:func:`recipe_config`: the
options that shape its model, objective and data) to :func:`hybridpgm.fit`'s
``config``, so ``--resume`` with another ``--hidden``, ``--particles``,
``--max-len`` ... is refused (naming the option) unless
``--override-hyperparameters``, like another ``--lr`` or ``--seed``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hybridpgm.recipes.run_folder import (add_checkpoint_arguments, checkpoint_options, prepare_output,
                                         remove_output_left_empty)
from hybridpgm.train import FitResult, fit
from hybridpgm.train.atomic_write import write_text_atomically
from hybridpgm.train.distributed import current
from hybridpgm.train.fit_options import SEED_BOUND

__all__ = ["add_common_arguments", "checkpoint_options", "existing_dir", "machine_description", "non_negative_float",
           "positive_float", "positive_int", "prepare_output", "recipe_config", "save_model", "seed_int", "throughput",
           "train", "remove_output_left_empty", "unit_of", "write_evaluation", "write_metrics"]

#: the full command line, set by :func:`hybridpgm.cli.main` (recorded in metrics.json)
COMMAND: str | None = None

#: units of the figures recipes report (merged into the ``"units"`` of metrics.json and evaluation.json).  A unit
#: is a string, or, for a figure that is a dict, a dict of its members' units (``"*"``: any member), so that every
#: number of a report that is not one of the :data:`SETTINGS` has one (:func:`unit_of`); a string unit of a dict
#: covers all its members
UNITS = {
    "test_log_likelihood": "nats per example (higher is better)",
    "test_elbo": "nats per example (higher is better)",
    "baseline_test_log_likelihood": "nats per example (higher is better)",
    "final_train_loss": "per-example loss minimized by each player (lower is better)",
    "train_wall_time_s": "seconds",
    "train_examples_per_s": "training examples / training wall time (all ranks)",
    "log_z": "nats",
    "log_z_stderr": "nats (standard error of log_z)",
    "ais_ess": "AIS chains: effective sample size (sum w)^2 / sum w^2 of the final weights",
    "log_z_starts": {"*": {"log_z": "nats", "stderr": "nats (standard error of log_z)",
                           "ess": "AIS chains: effective sample size (sum w)^2 / sum w^2 of the final weights",
                           "num_chains": "AIS chains", "num_steps": "AIS temperatures"}},
    "steps": "optimizer steps (of each player)",
    "test_size": "test examples",
    "train_size": "training examples",
    "elbo_samples": "samples from the guide per example of the test ELBO",
}

#: number-valued entries of a report that are the run's settings (as given, or as resolved from the options),
#: not measured figures: they carry no unit.  Every other number of metrics.json and evaluation.json does.
SETTINGS = frozenset({
    "epochs", "max_steps", "batch_size", "accumulate", "lr", "momentum", "weight_decay", "seed",
    "world_size", "k", "hidden", "layer_sizes", "latent_dim", "noise_dim", "num_features", "particles", "chains",
    "mean_field_steps", "importance_samples", "fake_weight", "window", "num_test", "num_train", "num_data",
    "num_labels", "num_symbols", "max_len", "missing", "nodes", "eval_every", "patience",
    "ais_chains", "ais_steps", "machine"})


def unit_of(units: dict[str, Any], path: tuple[str, ...]) -> str | None:
    """The unit of the figure at ``path`` (keys from the report's top level down) in a report's ``units``:
    a string unit of a dict covers its members, a dict unit is looked up member by member (``"*"``: any
    member); ``None`` where there is none."""
    unit = units.get(path[0])
    for key in path[1:]:
        if not isinstance(unit, dict):
            break
        unit = unit.get(key, unit.get("*"))
    return unit if isinstance(unit, str) else None


def _with_units(report: dict[str, Any], units: dict[str, Any] | None) -> dict[str, Any]:
    """``report`` with ``"units"``: those of :data:`UNITS` and the recipe's ``units`` (which win) of the figures
    ``report`` holds."""
    known = {**UNITS, **(units or {})}
    return {**report, "units": {k: v for k, v in known.items() if k in report}}


# ---------------------------------------------------------------- argument types
def _checked_number(parse, accept, what: str):
    """An argparse ``type`` that parses with ``parse`` and keeps values ``accept`` approves."""

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return check


positive_int = _checked_number(int, lambda v: v >= 1, "a positive integer")
positive_float = _checked_number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
non_negative_float = _checked_number(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
#: ``--seed``: the range :func:`hybridpgm.fit` accepts (``[0, 2**32)``, NumPy's bound), checked when parsed, so a
#: seed torch or NumPy would refuse is a one-line error rather than a traceback from a generator
seed_int = _checked_number(int, lambda v: 0 <= v < SEED_BOUND, "a seed, an integer in [0, 2**32 - 1]")


def existing_dir(text: str) -> str:
    """``--data-root``: a folder that exists, as an absolute path, so that a run records where its data lie
    whatever the working directory of a later ``hybridpgm evaluate RUN``.

    :raises argparse.ArgumentTypeError: the folder does not exist (named as typed).
    """
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"folder {text!r} does not exist")
    return os.path.abspath(text)


def device_name(text: str) -> str:
    from hybridpgm.errors import ConfigError, DeviceError
    from hybridpgm.train.device import resolve_device

    try:
        resolve_device(text)
    except (ConfigError, DeviceError) as error:  # a malformed name, or a device this machine lacks
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_common_arguments(parser: argparse.ArgumentParser, model: str, *, epochs: int, batch_size: int,
                         lr: float = 1e-3,
                         optimizer: str = "Adam", datasets: list[str] | None = None,
                         dataset: str = "digits", epochs_help: str | None = None,
                         batch_size_help: str | None = None) -> None:
    """Flags of ``hybridpgm train <model>`` shared by every model family;
    ``lr`` and ``optimizer`` are the recipe's real defaults (shown in ``--help``); ``epochs_help`` and
    ``batch_size_help`` replace the help of ``--epochs`` and ``--batch-size`` where the recipe says more."""
    from hybridpgm.data import DATASETS

    parser.set_defaults(model=model)
    choices = sorted(datasets or DATASETS)
    parser.add_argument("--dataset", default=dataset, choices=choices, help=f"data set (default: {dataset})")
    parser.add_argument("--data-root", type=existing_dir, default=None,
                        help="folder holding the data set's files (must exist)")
    parser.add_argument("--epochs", type=positive_int, default=epochs,
                        help=epochs_help or f"passes over the data (default {epochs})")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=batch_size_help or f"examples per step (default {batch_size})")
    parser.add_argument("--accumulate", type=positive_int, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--lr", type=positive_float, default=lr, help=f"{optimizer} learning rate (default {lr:g})")
    parser.add_argument("--device", type=device_name, default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                        help="mixed precision (default: full fp32)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1] (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<model>-<dataset>)")
    add_checkpoint_arguments(parser)
    parser.add_argument("--checkpoint-every", type=positive_int, default=100, help="steps between checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (``/proc/cpuinfo``), else :func:`platform.processor`'s, or ``None``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def machine_description() -> dict[str, Any]:
    """Where a run or benchmark ran: for JSON reports.  ``cpu_capability`` is the vector instruction set torch's
    CPU kernels dispatch to (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``...): two machines of one CPU family can
    differ there, and CPU timings (and ratios of a fixed cost to the arithmetic) with it."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_metrics(out: Path, metrics: dict[str, Any], units: dict[str, Any] | None = None) -> Path:
    """Write ``out/metrics.json`` atomically, adding the units of the figures
    present (:data:`UNITS` and the recipe's ``units``, which win), the library versions and the full command."""
    from hybridpgm.versions import versions

    metrics = _with_units(metrics, units)
    metrics["versions"] = versions()
    metrics["command"] = COMMAND or shlex.join(sys.argv)
    return write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n",
                                 "metrics file")


def write_evaluation(report: dict[str, Any], run_dir: Path, args: argparse.Namespace,
                     units: dict[str, Any] | None = None) -> Path:
    """Write ``evaluate``'s ``report`` with the units of its figures (as :func:`write_metrics` adds them: those
    of :data:`UNITS` and ``units``, set as ``report["units"]`` too, so that what ``evaluate`` returns is what
    it wrote) as JSON to ``--output`` (``args.output``) or ``run_dir/evaluation.json``,
    atomically (:func:`~hybridpgm.train.atomic_write.write_text_atomically`: a reader or a second writer never
    finds a half-written report, and only a regular file is replaced).

    :raises CheckpointError: the path exists and is not a regular file (a folder, a symbolic link, a FIFO, a
        device node), or the file system refused the write (naming the file and the OS reason)."""
    report["units"] = _with_units(report, units)["units"]
    return write_text_atomically(Path(args.output or run_dir / "evaluation.json"), json.dumps(report, indent=2) + "\n",
                                 "report")


def save_model(module: torch.nn.Module, out: Path, args: argparse.Namespace, **meta: Any) -> Path:
    """``out/model.pt`` with the recipe's name, data set and the absolute path of ``--data-root`` in its
    metadata (for ``hybridpgm evaluate|sample RUN``; ``evaluate --data-root`` overrides the recorded folder)."""
    from hybridpgm.serialization import save

    data_root = getattr(args, "data_root", None)
    return save(module, out / "model.pt", recipe=args.model, dataset=getattr(args, "dataset", None),
                data_root=None if data_root is None else os.path.abspath(data_root), seed=args.seed, **meta)


def throughput(result: FitResult, num_examples: int, batch_size: int, steps_before: int, seconds: float) -> float:
    """Training examples processed in this run (all ranks) divided by its wall time.

    Each of the ``W`` ranks trains on a shard of ``floor(N / W)`` examples (see
    :class:`~hybridpgm.train.batches.BatchStream`), an epoch being ``ceil(floor(N / W) / B)`` steps whose
    last batch holds the rest of the shard."""
    world = current().world_size
    shard = max(num_examples // world, 1)
    per_epoch = max(math.ceil(shard / batch_size), 1)
    last = shard - (per_epoch - 1) * batch_size
    seen = sum(last if step % per_epoch == per_epoch - 1 else batch_size
               for step in range(steps_before, result.steps))
    return seen * world / max(seconds, 1e-12)


#: entries of a recipe's namespace that are not its run configuration: :func:`hybridpgm.fit`'s own settings
#: (compared by ``fit`` itself: batch, accumulation, learning rate and the optimizer's momentum and weight
#: decay, precision, seed; ``--epochs`` is not compared, since extending a run is what resuming is for), where
#: the run goes, how it reports, and where the data set's files lie (the same data may move)
NOT_RUN_CONFIG = frozenset({
    "command", "epochs", "batch_size", "accumulate", "lr", "momentum", "weight_decay", "precision", "seed",
    "device", "out", "resume", "overwrite", "override_hyperparameters", "checkpoint_every", "no_progress",
    "data_root", "created_output", "run_folder"})


def recipe_config(args: argparse.Namespace, reporting: tuple[str, ...] = (), **used: Any) -> dict[str, Any]:
    """A recipe's run configuration, for :func:`hybridpgm.fit`'s ``config``: every option of ``args`` that is
    not in :data:`NOT_RUN_CONFIG` nor in ``reporting`` (the recipe's options that change only its report:
    ``--eval-samples``, ``--ais-steps`` ...), keyed by its flag (``"--max-len"``; ``"model"`` for the model
    name), so that a refused resume names the option.  An option left out of ``reporting`` is compared: a new
    one is on the safe side.

    :param used: the value a recipe actually uses where it differs from the parsed one (a default resolved
        from others, such as ``sbn``'s ``--particles``), by option name (``particles=5``).
    """
    values = {**vars(args), **used}
    return {(key if key == "model" else "--" + key.replace("_", "-")): value
            for key, value in sorted(values.items())
            if key not in NOT_RUN_CONFIG and key not in reporting}


def train(objective: Any, data: Any, args: argparse.Namespace, out: Path, optim: Any = None,
          callbacks: tuple = (), require_checkpoint: bool = True, *, config: dict[str, Any],
          **fit_kwargs: Any) -> tuple[FitResult, float, float]:
    """Run :func:`hybridpgm.fit` with the common flags and the recipe's run configuration ``config``
    (:func:`recipe_config`), checkpointing to
    ``out/checkpoint.pt``: continued under ``--resume`` (``resume="require"``; ``"auto"`` under ``--resume auto``;
    a checkpoint of another model, other hyperparameters or another ``config`` is refused unless
    ``--override-hyperparameters``; with ``require_checkpoint=False`` a run
    whose earlier stages were preempted starts this one afresh), replaced under
    ``--overwrite``, and otherwise never replaced (``resume="never"``).  ``optim`` defaults to
    Adam with ``--lr``.  Returns the result, the training wall time in seconds
    and the throughput (:func:`throughput`, examples per second)."""
    from hybridpgm.train.batches import batch_size_of

    options, steps_before = checkpoint_options(args, out, require=require_checkpoint, config=config)
    started = time.perf_counter()
    result = fit(objective, data, epochs=args.epochs, batch_size=args.batch_size, accumulate=args.accumulate,
                 optim=optim or functools.partial(torch.optim.Adam, lr=args.lr), precision=args.precision,
                 device=args.device, seed=args.seed, progress=not args.no_progress, callbacks=callbacks,
                 **options, **fit_kwargs)
    seconds = time.perf_counter() - started
    size = len(data) if isinstance(data, torch.utils.data.Dataset) else batch_size_of(data)
    return result, seconds, throughput(result, size, args.batch_size, steps_before, seconds)
