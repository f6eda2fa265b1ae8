"""What watches a run of :func:`~hybridpgm.fit` while its steps run: the progress bar and the heartbeat.

Both are made by :func:`open_monitors` once, under the run's :class:`~hybridpgm.train.signals.StopSignals`:
a Ctrl-C (a notebook's "interrupt kernel") that lands while the bar is made -- tqdm's first draw, the start
of its monitor thread -- is then a stop request like any other (one step, the checkpoint,
:class:`~hybridpgm.errors.TrainingInterrupted`), not a :class:`KeyboardInterrupt` out of tqdm's constructor,
and a bar whose construction fails anyway is not left registered with tqdm
(:func:`~hybridpgm.train.progress.progress_bar`): a bar left there shifts every later text bar of the
process one row down, and a notebook then prints one line per refresh.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from hybridpgm.train.heartbeat import Heartbeat, beating
from hybridpgm.train.progress import bar_label, progress_bar

if TYPE_CHECKING:
    from tqdm.std import tqdm

__all__ = ["open_monitors"]


def open_monitors(running: contextlib.ExitStack, *, total: int, initial: int, desc: str, show: bool,
                  context: Any) -> tuple[tqdm, Heartbeat | None]:
    """Make the run's bar and (on several ranks) its heartbeat, both closed when ``running`` closes.

    :param running: the exit stack ``fit`` closes when its steps end (or, on an earlier failure, when the call
        ends).
    :param total: the run's last step; ``initial``: its first (a resumed run's); ``desc``: the bar's label (with
        that of an enclosing :func:`~hybridpgm.train.progress.labelled` block).
    :param show: draw the bar (rank 0 with ``progress=True``).
    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext`.
    :returns: ``(bar, heartbeat)``; ``heartbeat`` is ``None`` in a single process.
    """
    bar = running.enter_context(progress_bar(total=total, initial=initial, desc=bar_label(desc), show=show))
    return bar, running.enter_context(beating(context))
