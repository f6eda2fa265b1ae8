"""Which optimizer update of which player :func:`hybridpgm.fit` is running.

With ``accumulate = M``, ``fit`` calls an objective's ``loss`` once per
micro-batch, M times for one optimizer step of a player.  An objective whose
loss advances state that belongs to the step rather than to the data
(:class:`~hybridpgm.infer.PersistentCD`'s chains: ``k`` sweeps per step) asks
:func:`current_update` for a token, the same object for every micro-batch of
one update and another one for the next, and ``None`` outside ``fit``, where
each call is a step of its own.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

__all__ = ["current_update", "one_update"]

_UPDATE: contextvars.ContextVar["object | None"] = contextvars.ContextVar("hybridpgm_update", default=None)


def current_update() -> object | None:
    """The token of the player update ``fit`` is running (``None`` outside one)."""
    return _UPDATE.get()


@contextlib.contextmanager
def one_update() -> Iterator[object]:
    """Mark the micro-batches of one player update (``fit``'s :class:`~hybridpgm.train.player_step.Player`)."""
    token = object()
    reset = _UPDATE.set(token)
    try:
        yield token
    finally:
        _UPDATE.reset(reset)
