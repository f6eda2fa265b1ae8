"""What :func:`~hybridpgm.fit` shows while it runs: its progress bar and its one-line notices on stderr.

The bar is tqdm's: ``tqdm.auto`` (the widget bar in a Jupyter kernel with ipywidgets, else the text bar on
stderr, as tqdm decides), imported when a bar is first shown; a hidden bar (``progress=False``, or a rank
other than 0) is a disabled ``tqdm.std`` bar that starts no ``tqdm_monitor`` thread (tqdm starts one, which
never ends, for any bar of a class whose ``monitor_interval`` is not 0; tqdm's own setting is left as it is, so a
shown bar keeps tqdm's monitor).  In a kernel without ipywidgets, tqdm's "IProgress not found"
warning comes from ``import pyro`` itself (``pyro.infer.mcmc.logger`` imports ``tqdm.auto``), not from here.

A bar is registered with tqdm (``tqdm._instances``) by its ``__new__``, before its ``__init__`` draws it: one whose
``__init__`` raised (a :class:`KeyboardInterrupt` in its first draw) would stay registered for as long as the
traceback lives, and every later text bar would draw one row lower (a notebook prints those as one line per
refresh), so :func:`progress_bar` takes it out again.  A run that ends early on purpose is :func:`finish`-ed:
tqdm's notebook bar shows any bar closed short of its total in red, as failed.
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from typing import Iterator

from tqdm.std import tqdm as text_tqdm

__all__ = ["advance", "bar_label", "finish", "labelled", "progress_bar", "say"]

#: what the bars of the ``fit`` calls inside :func:`labelled` add to their objective's name
_label: ContextVar[str | None] = ContextVar("hybridpgm_progress_label", default=None)


class _HiddenBar(text_tqdm):
    """A disabled text bar: tqdm's ``__new__`` starts its monitor thread for a class with ``monitor_interval``."""

    monitor_interval = 0
    monitor = None  # not tqdm's (the class attribute is looked up through the subclass)


def progress_bar(*, total: int, initial: int, desc: str, show: bool) -> text_tqdm:
    """A step counter of ``total`` steps starting at ``initial``, labelled ``desc``.

    :param show: draw it (rank 0 with ``progress=True``), with ``tqdm.auto``'s choice of bar; else a disabled
        text bar, which draws and prints nothing and starts no thread.
    :returns: a tqdm instance (a context manager; ``bar.disable`` is ``not show``).  If making it raises, the
        half-made bar is no longer registered with tqdm.
    """
    cls = _HiddenBar
    if show:
        from tqdm.auto import tqdm as cls
    options = dict(total=total, initial=initial, desc=desc, disable=not show, unit="step", dynamic_ncols=True)
    if not (isinstance(cls, type) and issubclass(cls, text_tqdm)):  # tqdm.auto.tqdm replaced by a factory: its own
        return cls(**options)
    bar = cls.__new__(cls, **options)  # tqdm's __new__ registers it in cls._instances
    try:
        bar.__init__(**options)
    except BaseException:
        with cls.get_lock():
            cls._instances.discard(bar)
        raise
    return bar


def finish(bar: text_tqdm) -> None:
    """Show ``bar`` as complete at its count: a run that ended early on purpose (a callback's stop, or a resumed
    run that had stopped) is a success, and tqdm's notebook bar shows one closed short of its total as failed.
    Not for an exception or a stop signal, which keep their bar short (red in a notebook).

    Its total becomes its count, and the widget's length with it (tqdm's notebook bar draws in a ``container``
    of label, bar and text, as its ``reset`` does); a hidden bar, or one already at its total, is left as it is.
    """
    if bar.disable or bar.total is None or bar.n >= bar.total:
        return
    bar.total = bar.n
    container = getattr(bar, "container", None)  # tqdm.notebook's widget box
    if container is not None:
        container.children[1].max = bar.n
    bar.refresh()


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Inside the block, each bar of :func:`~hybridpgm.fit` reads ``<objective class> (<label>)``: a greedy
    pretraining's layers (``ContrastiveDivergence (DBN layer 1 of 3)``, counted from 0 as its messages count,
    :mod:`hybridpgm.energy.greedy_stages`) are told apart, where each bar read ``ContrastiveDivergence``.

    :param label: what the bars add, in brackets, to the objective's class name.
    """
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def bar_label(desc: str) -> str:
    """``desc`` with the label of the enclosing :func:`labelled` block, if any: ``"desc (label)"``."""
    label = _label.get()
    return desc if label is None else f"{desc} ({label})"


def advance(bar: text_tqdm, losses: dict[str, float]) -> None:
    """Count one step on ``bar`` and show each player's loss of the step (``<player>_loss``); nothing for a
    hidden bar (which would still format the postfix)."""
    if not bar.disable:
        bar.update(1)
        bar.set_postfix({f"{p}_loss": f"{v:.4g}" for p, v in losses.items()}, refresh=False)


def say(message: str) -> None:
    """``message`` as one line ``hybridpgm: <message>`` on stderr (rank 0 only, by the callers)."""
    print(f"hybridpgm: {message}", file=sys.stderr, flush=True)
