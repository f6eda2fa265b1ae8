"""What :func:`~hybridpgm.fit` shows while it runs: its progress bar and its one-line notices on stderr.

The bar is tqdm's: ``tqdm.auto`` (the widget bar in a Jupyter kernel with ipywidgets, else the text bar on
stderr, as tqdm decides), imported when a bar is first shown; a hidden bar (``progress=False``, or a rank
other than 0) is a disabled ``tqdm.std`` bar that starts no ``tqdm_monitor`` thread (tqdm starts one, which
never ends, for any bar of a class whose ``monitor_interval`` is not 0; tqdm's own setting is left as it is, so a
shown bar keeps tqdm's monitor).  In a kernel without ipywidgets, tqdm's "IProgress not found"
warning comes from ``import pyro`` itself (``pyro.infer.mcmc.logger`` imports ``tqdm.auto``), not from here.
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm as text_tqdm

__all__ = ["advance", "progress_bar", "say"]


class _HiddenBar(text_tqdm):
    """A disabled text bar: tqdm's ``__new__`` starts its monitor thread for a class with ``monitor_interval``."""

    monitor_interval = 0
    monitor = None  # not tqdm's (the class attribute is looked up through the subclass)


def progress_bar(*, total: int, initial: int, desc: str, show: bool) -> text_tqdm:
    """A step counter of ``total`` steps starting at ``initial``, labelled ``desc``.

    :param show: draw it (rank 0 with ``progress=True``), with ``tqdm.auto``'s choice of bar; else a disabled
        text bar, which draws and prints nothing and starts no thread.
    :returns: a tqdm instance (a context manager; ``bar.disable`` is ``not show``).
    """
    cls = _HiddenBar
    if show:
        from tqdm.auto import tqdm as cls
    return cls(total=total, initial=initial, desc=desc, disable=not show, unit="step", dynamic_ncols=True)


def advance(bar: text_tqdm, losses: dict[str, float]) -> None:
    """Count one step on ``bar`` and show each player's loss of the step (``<player>_loss``); nothing for a
    hidden bar (which would still format the postfix)."""
    if not bar.disable:
        bar.update(1)
        bar.set_postfix({f"{p}_loss": f"{v:.4g}" for p, v in losses.items()}, refresh=False)


def say(message: str) -> None:
    """``message`` as one line ``hybridpgm: <message>`` on stderr (rank 0 only, by the callers)."""
    print(f"hybridpgm: {message}", file=sys.stderr, flush=True)
