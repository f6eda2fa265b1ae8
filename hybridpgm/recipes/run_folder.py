"""The run folder of ``hybridpgm train <model>`` and its checkpoint flags.

``--resume`` continues the checkpoint in ``--out`` (it must exist: :func:`hybridpgm.fit`'s
``resume="require"``), ``--resume auto`` continues it when there is one and otherwise starts the run
(``resume="auto"``), ``--overwrite`` starts afresh, and with none of them an existing checkpoint refuses
the run (``resume="never"``), so that a typo in ``--out`` never silently continues or replaces another run.

``--resume auto`` is for a job a scheduler restarts with the *same* command line (SLURM ``--requeue``, a
Kubernetes Job's restart, a spot-instance rescheduler): its first launch starts, and every launch after a
preemption (SIGTERM: ``fit`` saves the step reached) continues -- also one killed before its first checkpoint,
which starts again.  A value of ``--resume`` rather than a flag of its own, since it is the same resume with
one case (no checkpoint yet) allowed, as ``fit``'s ``resume="auto"`` is next to ``"require"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hybridpgm.errors import ConfigError
from hybridpgm.train.atomic_write import make_writable_folder

__all__ = ["add_checkpoint_arguments", "checkpoint_options", "prepare_output", "remove_output_left_empty",
           "resume_of"]

#: the value ``--resume`` takes alone (``fit``'s ``resume="require"``); ``--resume auto`` gives ``"auto"``
RESUME_REQUIRE = "require"


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume [auto]``, ``--overwrite`` (the two exclude each other) and ``--override-hyperparameters``.
    ``--resume require`` is ``--resume`` spelled out (argparse checks the flag's own value against its choices)."""
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", nargs="?", const=RESUME_REQUIRE, default=None, choices=["auto", RESUME_REQUIRE],
                        metavar="auto",
                        help="continue from the checkpoint in --out (must exist); --resume auto: continue it if "
                             "there is one, else start (for a job a scheduler requeues with the same command)")
    resume.add_argument("--overwrite", action="store_true",
                        help="start afresh, replacing the checkpoint in --out (without it an existing one is an error)")
    parser.add_argument("--override-hyperparameters", action="store_true",
                        help="with --resume: continue although the learning rate, batch size, ... differ from the "
                             "checkpoint's (the requested ones apply); without it such a resume is refused")


def resume_of(args: argparse.Namespace) -> str | None:
    """The parsed ``--resume``: ``"require"`` (``--resume``), ``"auto"`` (``--resume auto``) or ``None`` (not
    given).  ``True`` (a namespace built by hand, as ``store_true`` gave it before) reads as ``"require"``."""
    value = getattr(args, "resume", None)
    if value is True:
        return RESUME_REQUIRE
    return value or None


def prepare_output(args: argparse.Namespace, default: str, first_checkpoint: str = "checkpoint.pt") -> Path:
    """Check and create the run folder before any data is loaded or trained.

    ``first_checkpoint`` is the checkpoint a run writes first (a staged run's
    first stage): ``--resume`` needs it, and without ``--resume`` or
    ``--overwrite`` its presence refuses the run.  ``--resume auto`` needs nothing
    and refuses nothing: it continues what is there, or starts.

    :raises ConfigError: the path is empty, is a file or lies under one, cannot be
        created or written, ``--override-hyperparameters`` comes without ``--resume``,
        ``--resume`` finds no checkpoint, or a checkpoint (``checkpoint.pt`` or any
        ``checkpoint-stage<i>.pt``) exists and neither ``--resume`` nor ``--overwrite`` was given.
    """
    if args.out is not None and not str(args.out).strip():
        raise ConfigError(f"--out {args.out!r} is empty; give an output folder, or leave --out out for {default!r}")
    out = Path(args.out or default)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is an existing file, not a folder")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {str(out)!r} lies under {str(parent)!r}, which is a file")
    resume = resume_of(args)
    if getattr(args, "override_hyperparameters", False) and resume is None:
        raise ConfigError("--override-hyperparameters applies only with --resume (a fresh run has no checkpoint "
                          "whose hyperparameters it could override)")
    checkpoint = out / first_checkpoint
    if resume == RESUME_REQUIRE and not checkpoint.is_file():
        raise ConfigError(f"--resume: no checkpoint to resume from at {str(checkpoint)!r} (--resume auto starts "
                          "a run where there is none)")
    if not (resume or getattr(args, "overwrite", False)) and out.is_dir():
        # any checkpoint of a run, also a staged run's later stage (a DBN with another number of layers), is
        # refused before anything trains, not when its stage is reached
        for existing in [checkpoint, out / "checkpoint.pt", *sorted(out.glob("checkpoint-stage*.pt"))]:
            if existing.exists():
                raise ConfigError(f"{str(existing)!r} exists; pass --resume to continue it (--resume auto in a "
                                  "job script a scheduler may requeue) or --overwrite to replace it")
    args.created_output = [p for p in (out, *out.parents) if not p.exists()]  # deepest first, for a failed run
    args.run_folder = out  # for the CLI's line after a Ctrl-C outside fit (whether a checkpoint is kept)
    try:
        make_writable_folder(out)  # created, and a file written there and removed at once
    except OSError as error:
        raise ConfigError(f"--out {str(out)!r} cannot be created or written: {error.strerror or error}") from None
    return out


def remove_output_left_empty(args: argparse.Namespace) -> None:
    """Remove the folders :func:`prepare_output` created for a run that failed before writing into them (a
    folder that holds anything stays)."""
    for folder in getattr(args, "created_output", ()):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): it and its parents stay
            return


def checkpoint_options(args: argparse.Namespace, out: Path, name: str = "checkpoint.pt",
                       require: bool = True, *, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The checkpoint arguments of :func:`hybridpgm.fit` for the common flags (``out/<name>``:
    continued under ``--resume`` -- with ``resume="require"``, or, with ``require=False`` or under
    ``--resume auto``, from the checkpoint when there is one (``resume="auto"``) --, replaced under
    ``--overwrite``, otherwise never replaced) and the recipe's run configuration ``config``
    (:func:`~hybridpgm.recipes.common.recipe_config`, compared on resume), and the steps the checkpoint
    already holds (0 for a fresh run)."""
    from hybridpgm.train.checkpoint import load_checkpoint

    checkpoint = out / name
    mode = resume_of(args)
    steps_before = int(load_checkpoint(checkpoint)["step"]) if mode and checkpoint.exists() else 0
    resume = "never" if mode is None else ("require" if require and mode == RESUME_REQUIRE else "auto")
    return {"checkpoint": checkpoint, "checkpoint_every": args.checkpoint_every, "resume": resume,
            "overwrite": args.overwrite, "override_hyperparameters": args.override_hyperparameters,
            "config": config}, steps_before
