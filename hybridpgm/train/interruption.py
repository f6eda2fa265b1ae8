"""The :class:`~hybridpgm.errors.TrainingInterrupted` that :func:`~hybridpgm.fit` raises after a signal.

On SIGTERM or SIGINT ``fit`` finishes its current step, writes its checkpoint and stops;
:func:`interruption` builds the exception it then raises (and rank 0 prints): which signal, at which step,
where the run was saved and how to continue it.
"""

from __future__ import annotations

import os

from hybridpgm.errors import TrainingInterrupted
from hybridpgm.train.signals import signal_name

__all__ = ["interruption"]


def interruption(signum: int, step: int, checkpoint: str | os.PathLike | None, mode: str) -> TrainingInterrupted:
    """The exception of a run stopped by signal ``signum`` after ``step`` steps.

    :param signum: the signal received (``signal.SIGINT`` or ``signal.SIGTERM``).
    :param step: the optimizer steps completed and saved.
    :param checkpoint: the checkpoint written, or ``None`` (nothing was saved).
    :param mode: the run's resume mode (:func:`~hybridpgm.train.resume.resume_mode`): after ``"never"`` the
        message says to run again with ``resume=True``, which that mode would refuse otherwise.
    :returns: a :class:`~hybridpgm.errors.TrainingInterrupted` whose message names the signal, the step and
        the checkpoint (``exit_code`` :math:`128 + \\text{signum}`).
    """
    again = ("run again with the same arguments to resume" if mode != "never" else  # "never" would refuse it
             "run again with resume=True (CLI: --resume) to continue it")
    where = (f"checkpoint written to {str(checkpoint)!r}; {again}"
             if checkpoint is not None else "no checkpoint path was given, so nothing was saved")
    message = f"interrupted by {signal_name(signum)} at step {step}; {where}"
    return TrainingInterrupted(message, signum=signum, step=step, checkpoint=checkpoint)
