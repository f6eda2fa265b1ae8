"""``fit``'s refusal of Pyro handlers reads Pyro's handler stack, which is one per process: it reads it holding
hybridpgm's global-state lock (``fit`` runs inside :func:`~hybridpgm.param_store_scope.own_param_store`, which
holds it), so another thread's ``fit`` in the middle of a step (its handlers on the stack, the lock held) is
waited for, not taken for handlers around this call (:mod:`hybridpgm.train.callers_context`)."""

from __future__ import annotations

import threading
import time

import pyro.poutine as poutine

import hybridpgm
from tests.train.test_callers_context import SGD, OneWeight, X, Y, _fit_one_weight


class InsideAHandler(OneWeight):
    """:class:`OneWeight` whose loss runs inside a Pyro handler, says so, and stays there a moment."""

    def __init__(self, inside: threading.Event):
        super().__init__()
        self.inside = inside

    def loss(self, player, batch):
        with poutine.block():
            self.inside.set()
            time.sleep(0.3)  # long enough for the other thread to reach fit's entry while this handler is open
            return super().loss(player, batch)


def test_another_threads_step_in_a_handler_is_not_a_handler_around_this_fit():
    inside, errors = threading.Event(), []

    def other():
        try:
            hybridpgm.fit(InsideAHandler(inside), (X, Y), batch_size=8, max_steps=2, optim=SGD, progress=False,
                          seed=0, device="cpu")
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(timeout=60)
        weight, _ = _fit_one_weight()  # started while the other thread's step holds its handler open
    finally:
        thread.join()
    assert errors == []
    alone, _ = _fit_one_weight()
    assert weight.item() == alone.item()
