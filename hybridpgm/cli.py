"""The ``hybridpgm`` command: ``list``, ``train <model>``, ``evaluate RUN``, ``sample RUN``.

Multi-process: ``torchrun --nproc_per_node=N -m hybridpgm train <model> ...``.

A run records its ``--data-root`` (and bayes-net its ``--network`` file) as an
absolute path, so ``evaluate RUN`` works from any working directory;
``evaluate RUN --data-root DIR`` reads the data set from ``DIR`` instead
(the data moved), ``evaluate RUN --network FILE`` a bayes-net run's network.

Every error the user can fix (a bad flag, a missing data set or folder, a
device this machine lacks) is one line, ``hybridpgm: error: ...``, on standard
error with exit status 2, reported before any training starts.  So is a size
too large to allocate (``--hidden``, ``--num-samples``): the allocator's
error, in one line, instead of its traceback.

``evaluate RUN`` scores with the counts the run recorded (``--ais-steps``,
``--eval-samples`` ...) on the test set drawn again from its recorded sizes
(``--num-data``, ``--num-test`` ...), ``sample RUN`` a DBN's or DBM's
``--gibbs-steps``; one read from the file above its cap is refused unless passed
on the command line, which also sets a count (:mod:`hybridpgm.recipes.run_counts`).

``evaluate|sample RUN --output FILE`` is checked before any work: a folder, a
missing folder, and a FIFO, symbolic link or device node (which hybridpgm would
replace by a regular file) are refused, and ``sample``'s suffix must name a
format the run's recipe writes (``.csv`` for bayes-net, else an image format
matplotlib writes: ``.png``, ``.pdf``, ``.svg`` ...).  ``~`` is the home folder.

A package warning (a :class:`~hybridpgm.errors.HybridPGMWarning`: a
:class:`~hybridpgm.errors.TrainingWarning` when a run goes on, but not as the
user may think, ``train dbn|dbm --resume`` resuming a stage on the changed
features of a stage below; an :class:`~hybridpgm.errors.EstimateWarning` of
``evaluate``) is one line, ``hybridpgm: warning: ...``, on
standard error, where Python's warning filters let it through, not a warning
attributed to a line of ``runpy``; it changes no exit status.  A package
warning the filters make an error (``-W error``) is one error line and exit
status 2.  Called with its arguments, ``main(["train", ...])`` leaves the
warnings to the caller's settings (recorded by ``pytest.warns``).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from pathlib import Path

from hybridpgm.cli_lines import out_of_memory_line, outside_fit_line, package_warnings_as_lines
from hybridpgm.errors import HybridPGMError, HybridPGMWarning, TrainingInterrupted

__all__ = ["build_parser", "main", "version_line"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``hybridpgm: error: <message>``, exit 2.

    A ``train <model>`` parser gets its recipe's arguments when it is first used (:meth:`defer_arguments`),
    so that ``hybridpgm --version`` or ``hybridpgm evaluate RUN`` imports no recipe it does not run (the GP
    recipe imports GPyTorch, whose import warns under ``python -W error``)."""

    _add_later = None

    def defer_arguments(self, add) -> None:
        """Call ``add(self)`` (which adds this parser's arguments) before this parser first parses or
        formats its help."""
        self._add_later = add

    def _add_deferred(self) -> None:
        add, self._add_later = self._add_later, None
        if add is not None:
            add(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_deferred()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_deferred()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_deferred()
        return super().format_usage()

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"hybridpgm: error: {message}\n")


def version_line() -> str:
    from hybridpgm.serialization import versions

    v = versions()
    return f"hybridpgm {v['hybridpgm']} (Pyro {v['pyro']}, torch {v['torch']}, GPyTorch {v['gpytorch']})"


class _Version(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    from hybridpgm.recipes import RECIPES

    parser = _Parser(prog="hybridpgm", description="graphical models and deep networks with Pyro")
    parser.add_argument("--version", action=_Version, help="print the hybridpgm, Pyro, torch and GPyTorch versions")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="list model families and data sets")
    train = commands.add_parser("train", help="train a model family on a data set")
    models = train.add_subparsers(dest="model", required=True, metavar="model", parser_class=_Parser)
    for name, (recipe, description) in sorted(RECIPES.items()):
        sub = models.add_parser(name, help=description, description=description)
        sub.defer_arguments(functools.partial(_add_recipe_arguments, recipe, name))
    for name, text in (("evaluate", "score a trained run again (reads RUN/model.pt)"),
                       ("sample", "draw samples from a trained run (reads RUN/model.pt)")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("run", metavar="RUN", help="a run folder written by `hybridpgm train`")
        if name == "sample":  # evaluate's counts are --eval-samples ... (add_count_arguments): not this one
            sub.add_argument("--num-samples", type=_positive, default=64, help="samples to draw (default 64)")
        else:  # only evaluate reads the data set again (sample draws from the model alone)
            sub.add_argument("--data-root", type=_existing_dir, default=None,
                             help="folder holding the data set's files now (default: the folder the run recorded, "
                                  "its --data-root as an absolute path); for a data set read from disk")
            sub.add_argument("--network", default=None,
                             help="bayes-net runs: the network's .bif file now (default: the file or bundled name "
                                  "the run recorded); it must hold the trained network's nodes, parents and states")
        sub.add_argument("--seed", type=_seed, default=0, help="random seed, in [0, 2**32 - 1] (default 0)")
        sub.defer_arguments(functools.partial(_add_count_arguments, name))  # --ais-steps ...: up to their caps
        default = "RUN/evaluation.json" if name == "evaluate" else "RUN/samples-seed<SEED>.png (.csv for bayes-net)"
        sub.add_argument("--output", default=None, help=f"file to write (default {default})")
    return parser


def _add_recipe_arguments(recipe, name: str, parser: argparse.ArgumentParser) -> None:
    recipe.add_arguments(parser, name)


def _add_count_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    from hybridpgm.recipes.run_counts import add_count_arguments

    add_count_arguments(parser, command, _positive)


def _positive(text: str) -> int:
    from hybridpgm.recipes.common import positive_int

    return positive_int(text)


def _existing_dir(text: str) -> str:
    from hybridpgm.recipes.common import existing_dir

    return existing_dir(text)


def _seed(text: str) -> int:
    from hybridpgm.recipes.common import seed_int

    return seed_int(text)


def _list() -> None:
    from hybridpgm.data import DATASETS
    from hybridpgm.recipes import RECIPES

    print("models:")
    for name, (_, description) in sorted(RECIPES.items()):
        print(f"  {name:<12} {description}")
    print("datasets:")
    for name, (shape, description) in sorted(DATASETS.items()):
        print(f"  {name:<14} {shape[0]}x{shape[1]}  {description}")
    print("  (bayes-net: a pgmpy network or .bif file, --network; crf: a generated HMM task;")
    print("   dkl: scikit-learn's diabetes; gp-lstm: statsmodels' co2, elnino, nile, sunspots)")


def _after_training(args: argparse.Namespace) -> dict:
    """``evaluate RUN`` / ``sample RUN``: load the model, hand it to its recipe."""
    import torch

    from hybridpgm.errors import ConfigError
    from hybridpgm.recipes import RECIPES
    from hybridpgm.recipes.run_counts import resolve_counts
    from hybridpgm.serialization import load_model

    run = Path(args.run)
    if not run.is_dir():
        problem = "is a file, not a folder" if run.exists() else "does not exist"
        raise ConfigError(f"run folder {str(run)!r} {problem}")
    if args.output is not None:  # before any work: a path that cannot be written is named at once
        from hybridpgm.paths import file_path

        args.output = str(file_path(args.output, "--output", ConfigError))
        _check_output(Path(args.output))
    saved = load_model(run / "model.pt")
    recipe_name = saved.meta.get("recipe")
    if recipe_name not in RECIPES:
        raise ConfigError(f"{str(run / 'model.pt')!r} was not written by a `hybridpgm train` recipe")
    if getattr(args, "data_root", None) is not None:
        _override_data_root(saved.meta, args.data_root, run)
    if getattr(args, "network", None) is not None:
        if recipe_name != "bayes-net":
            raise ConfigError(f"--network {args.network!r} was given, but the run {str(run)!r} is a {recipe_name} "
                              "run; --network applies to bayes-net runs")
        saved.meta["network"] = args.network
    resolve_counts(saved.meta, args, args.command, recipe_name, run)  # before any work, as the checks above
    recipe = RECIPES[recipe_name][0]
    action = getattr(recipe, args.command, None)
    if action is None:
        raise ConfigError(f"model {recipe_name!r} has no `{args.command}` command")
    if args.output is not None and args.command == "sample":
        _check_sample_format(Path(args.output), recipe_name)
    torch.manual_seed(args.seed)
    return action(saved, run, args)


def _override_data_root(meta: dict, data_root: str, run: Path) -> None:
    """``evaluate --data-root``: read the run's data set from ``data_root`` instead of the folder it recorded
    (``meta["data_root"]``, replaced in place).

    :raises ConfigError: the run's data set reads no folder (it would be silently ignored).
    """
    from hybridpgm.data.registry import READ_FROM_DISK
    from hybridpgm.errors import ConfigError

    dataset = meta.get("dataset")
    if dataset not in READ_FROM_DISK:
        raise ConfigError(f"--data-root {data_root!r} was given, but the run {str(run)!r} ({meta.get('recipe')}) "
                          f"trained on {'no data set read from disk' if dataset is None else repr(dataset)}, which "
                          f"reads no folder; --data-root applies to {', '.join(READ_FROM_DISK)}")
    meta["data_root"] = data_root


def _check_output(path: Path) -> None:
    """Refuse an ``--output`` that names a folder, lies in a folder that does not exist, or exists as something
    other than a regular file (a FIFO, a symbolic link, a device node: hybridpgm would replace the node itself
    by a regular file, see :func:`~hybridpgm.train.atomic_write.check_replaceable`).

    :raises ConfigError: naming the path and what is wrong with it.
    :raises CheckpointError: ``path`` exists and is not a regular file.
    """
    from hybridpgm.errors import ConfigError
    from hybridpgm.train.atomic_write import check_replaceable

    if path.is_dir():
        raise ConfigError(f"--output {str(path)!r} is a folder; give the path of a file")
    if not path.parent.is_dir():
        raise ConfigError(f"--output {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    check_replaceable(path, "--output file")


def _check_sample_format(path: Path, recipe_name: str) -> None:
    """Refuse a ``sample --output`` whose suffix names a format the run's recipe does not write: ``.csv`` for
    bayes-net (rows of sampled states), else an image format matplotlib writes
    (:func:`~hybridpgm.diagnostics.figure_files.figure_formats`: ``.png``, ``.pdf``, ``.svg`` ...).

    :raises ConfigError: naming the path, its suffix and the suffixes that would do.
    """
    from hybridpgm.errors import ConfigError

    if recipe_name == "bayes-net":
        formats = ["csv"]
    else:
        from hybridpgm.diagnostics.figure_files import figure_formats

        formats = figure_formats()
    if path.suffix[1:].lower() not in formats:
        found = f"has the suffix {path.suffix!r}" if path.suffix else "has no extension"
        raise ConfigError(f"--output {str(path)!r} {found}, but a {recipe_name} run's samples are written as "
                          f"{', '.join('.' + f for f in formats)}; name the file with one of them")


def _check_data_root(args: argparse.Namespace) -> None:
    """Refuse ``--data-root`` for a data set that reads no folder (it would be silently ignored).

    :raises ConfigError: naming the data set and those that read a folder.
    """
    from hybridpgm.data.registry import READ_FROM_DISK
    from hybridpgm.errors import ConfigError

    if getattr(args, "data_root", None) is not None and getattr(args, "dataset", None) not in READ_FROM_DISK:
        raise ConfigError(f"--data-root {args.data_root!r} was given, but --dataset {args.dataset} reads no folder; "
                          f"--data-root applies to {', '.join(READ_FROM_DISK)}")


def main(argv: list[str] | None = None) -> int:
    """The command: its exit status (0; 2 for an error the user can fix; 128 + the signal number after SIGTERM
    or SIGINT, also a Ctrl-C before ``fit`` handles signals, which is one line rather than a traceback)."""
    parsed: list[argparse.Namespace] = []
    try:
        return _main(argv, parsed)
    except KeyboardInterrupt:  # fit's TrainingInterrupted is handled in _main: this one came outside fit
        import signal

        if parsed:
            from hybridpgm.recipes import common

            common.remove_output_left_empty(parsed[0])
        print(outside_fit_line(parsed[0] if parsed else None), file=sys.stderr)
        return 128 + signal.SIGINT


def _main(argv: list[str] | None, parsed: list[argparse.Namespace]) -> int:
    from hybridpgm.recipes import common

    args = build_parser().parse_args(argv)
    parsed.append(args)
    common.COMMAND = "hybridpgm " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        _list()
        return 0
    from hybridpgm.recipes import RECIPES

    try:
        with package_warnings_as_lines(argv is None):
            if args.command == "train":
                _check_data_root(args)
                metrics = RECIPES[args.model][0].run(args)
            else:
                metrics = _after_training(args)
    except (HybridPGMError, HybridPGMWarning, OSError) as error:  # OSError: a report or figure the OS would not
        common.remove_output_left_empty(args)  # let us write; a warning: one made an error by -W or PYTHONWARNINGS
        message = " ".join(str(error).split())
        made = " (a warning, made an error by the warning filters)" if isinstance(error, HybridPGMWarning) else ""
        print(f"hybridpgm: error: {message}{made}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:  # fit already printed where the checkpoint is
        if stop.step is None:
            print(f"hybridpgm: {' '.join(str(stop).split())}", file=sys.stderr)
        else:
            again = ("run the same command to continue" if getattr(args, "resume", None) else  # it resumes
                     "run the same command with --resume to continue (a job script a scheduler requeues: "
                     "--resume auto, which also starts a run)")
            print(f"hybridpgm: interrupted; {again}", file=sys.stderr)
        return stop.exit_code
    except (RuntimeError, MemoryError) as error:  # a size too large to allocate (--hidden, --num-samples ...)
        first = out_of_memory_line(error)
        if first is None:
            raise
        common.remove_output_left_empty(args)
        print(f"hybridpgm: error: out of memory: {first[:300]} (ask for less: a smaller --hidden, --batch-size, "
              "--num-samples ...)", file=sys.stderr)
        return 2
    if metrics:
        print(json.dumps({k: v for k, v in metrics.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
