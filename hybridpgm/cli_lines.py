"""The one-line reports of the ``hybridpgm`` command (:mod:`hybridpgm.cli`): an allocation that failed, a
package warning, and a Ctrl-C that came outside :func:`hybridpgm.fit` (whose own handlers save the step reached
and raise :class:`~hybridpgm.errors.TrainingInterrupted`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from hybridpgm.errors import HybridPGMWarning

__all__ = ["out_of_memory_line", "outside_fit_line", "package_warnings_as_lines"]


#: what allocators say when an allocation fails (torch's CPU and CUDA allocators, the OS), in lower case
OUT_OF_MEMORY = ("can't allocate memory", "cannot allocate memory", "not enough memory", "out of memory",
                  "defaultcpuallocator")


def out_of_memory_line(error: BaseException) -> str | None:
    """The first line of ``error``'s message if it says an allocation failed (:class:`torch.OutOfMemoryError`,
    Python's :class:`MemoryError`, or a :class:`RuntimeError` of torch's CPU allocator), else ``None``: any
    other error is a bug to show in full, not to turn into one line."""
    import torch

    text = str(error).strip()
    first = text.splitlines()[0].strip() if text else type(error).__name__
    if isinstance(error, (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)):
        return first
    if isinstance(error, RuntimeError) and any(marker in text.lower() for marker in OUT_OF_MEMORY):
        return first
    return None


@contextlib.contextmanager
def package_warnings_as_lines(entry_point: bool):
    """Show each package warning (:class:`~hybridpgm.errors.HybridPGMWarning`) let through by the warning filters
    as one line ``hybridpgm: warning: <message>`` on standard error, other libraries' warnings as before, where
    :func:`main` is the process's command (``argv`` not given): only ``warnings.showwarning`` is replaced, and put
    back on exit (the filters, which libraries imported during the run may extend, are left alone).  :func:`main`
    called with its arguments (a test, a notebook) changes nothing: its warnings are recorded and shown as the
    caller's settings say.

    :param entry_point: whether :func:`main` runs as the command."""
    if not entry_point:
        yield
        return
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, HybridPGMWarning):
            print(f"hybridpgm: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = shown


def outside_fit_line(args: argparse.Namespace | None) -> str:
    """The line after a Ctrl-C that ``fit``'s handlers did not catch (while arguments were checked, a recipe or
    torch imported, the data loaded, the optimizer built, or while a finished run was evaluated): whether a
    checkpoint of the run is kept, and how to continue."""
    if getattr(args, "command", None) != "train":  # evaluate, sample, list, or the arguments not yet parsed
        return "hybridpgm: interrupted by SIGINT"
    folder = getattr(args, "run_folder", None)
    kept = sorted(folder.glob("checkpoint*.pt")) if folder is not None and folder.is_dir() else []
    if not kept:
        return "hybridpgm: interrupted by SIGINT before training started; nothing was saved"
    if getattr(args, "resume", None):
        again = "run the same command to continue"
    elif getattr(args, "overwrite", False):  # the one replaced, or this run's own if fit had returned
        again = ("run the command with --resume instead of --overwrite to continue it, or the same command to "
                 "start afresh")
    else:  # this run's own: fit returned (a run that found one was refused unless --resume or --overwrite)
        again = "run the same command with --resume to continue"
    return f"hybridpgm: interrupted by SIGINT outside training; the checkpoint in {str(folder)!r} is kept: {again}"
