"""Graceful stop of :func:`hybridpgm.fit` on SIGTERM and SIGINT.

Cluster schedulers (SLURM, Kubernetes) send SIGTERM some seconds before they
kill a job; a user presses Ctrl-C (SIGINT).  While ``fit`` runs,
:class:`StopSignals` turns the first such signal into a request: the current
step finishes, every rank agrees on the stop step (the request travels in the
collective ``fit`` already makes at the end of each step), the checkpoint is
written, one line says where and at which step, and
:class:`~hybridpgm.errors.TrainingInterrupted` (a :class:`KeyboardInterrupt`)
is raised.  A second signal raises it at once, without a checkpoint (the
previous one, written atomically, stays on disk).  A signal sent to the whole
process group (Ctrl-C in a terminal, a scheduler's SIGTERM) also stops the
worker processes of a ``DataLoader`` a callback iterates: a callback that fails
at the end of the signalled step (:func:`step_callbacks`) is reported in a
warning, and the step's checkpoint is still written (where ``fit`` has a
``checkpoint`` path; the warning says which).

Handlers are installed only for the duration of ``fit`` and only in the main
thread (Python delivers signals there alone); the previous handlers are
restored afterwards, so importing hybridpgm changes nothing.
"""

from __future__ import annotations

import signal
import threading
import warnings
from os import PathLike
from typing import Any

from hybridpgm.errors import TrainingInterrupted, TrainingWarning
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["STOP_SIGNALS", "StopSignals", "signal_name", "step_callbacks"]

#: the signals that ask ``fit`` to stop gracefully
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """Context manager recording the first SIGINT/SIGTERM in :attr:`signum` (the example loops until one
    arrives).

    >>> with StopSignals() as stop:  # doctest: +SKIP
    ...     while not stop.signum:
    ...         ...  # one step of work

    Outside the main thread it installs nothing (``signum`` stays ``0``), nor
    for a signal the process ignores (``SIG_IGN``, as under ``nohup``).
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:  # the caller chose to ignore it (nohup): respect that
                    continue
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the handlers back that were installed before :meth:`__enter__`.

        SIGTERM's comes first and SIGINT's last: once SIGINT's previous handler (Python's default, raising
        :class:`KeyboardInterrupt`) is back, a Ctrl-C can raise at any bytecode, and by then nothing is left to
        restore.  Each entry is dropped only after its handler is back, and an exception raised meanwhile (by a
        signal handler that runs between two calls) does not stop the others from being restored: it is
        re-raised after them.
        """
        error: BaseException | None = None
        for signum in sorted(self._previous, key=lambda s: s == signal.SIGINT):  # SIGINT last
            for _attempt in range(3):  # a signal handler's exception may arrive before the call took effect: again
                if signum not in self._previous:  # restored meanwhile (a second signal's handler restores them all)
                    break
                handler = self._previous[signum]
                try:
                    signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
                    del self._previous[signum]
                    break
                except BaseException as e:  # restore the rest first, re-raise below
                    if error is None:
                        error = e
                    if isinstance(e, Exception):  # signal.signal itself failed: retrying will not help
                        break
        if error is not None:
            raise error

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            self.restore()  # a third signal goes to the previous handler
            raise TrainingInterrupted(f"second {signal_name(signum)}: training stopped at once, without writing a "
                                      "checkpoint (the last one written is kept)", signum=signum)
        self.signum = signum


def step_callbacks(callbacks, info, stop: StopSignals, checkpoint: str | PathLike | None, *,
                   single_process: bool = True) -> None:
    """Run each callback's ``on_step_end(info)``; when one raises after a stop signal arrived, warn instead.

    The step itself is done: a failure of its callbacks once ``fit`` has been asked to stop (a callback's
    ``DataLoader`` workers killed by the same signal) must not lose the checkpoint of the step, so the callbacks
    left are skipped and the error is reported in a :class:`~hybridpgm.errors.TrainingWarning`, and ``fit``
    stops as the signal asked.  Without a signal, or in a run of several processes (``single_process=False``:
    the other ranks' callbacks may be inside a collective the failed one would have joined, so going on to the
    stop agreement would pair it with the wrong collective), the error propagates as before.

    :param checkpoint: ``fit``'s checkpoint path (``None``: none is written), for the warning to say where the
        step is saved, or that it is not.
    :warns TrainingWarning: (at the caller's line) naming the callback, the step, the signal and the error.
    """
    for callback in callbacks:
        try:
            callback.on_step_end(info)
        except Exception as error:
            if not stop.signum or not single_process:
                raise
            saved = (f"the step's checkpoint is written to {str(checkpoint)!r}" if checkpoint is not None else
                     "no checkpoint is written (fit was given no checkpoint path)")
            warnings.warn(f"{type(callback).__name__}.on_step_end failed at step {info.step} after "
                          f"{signal_name(stop.signum)} ({type(error).__name__}: {str(error)[:200]}); the remaining "
                          f"callbacks of the step were skipped, fit stops as the signal asked, and {saved}",
                          TrainingWarning, stacklevel=users_stacklevel())
            return
