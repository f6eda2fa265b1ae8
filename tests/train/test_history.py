"""The run's record and its health check (hybridpgm/train/history.py)."""

import math

from hybridpgm.train.history import EXPLOSION_FACTOR, History, loss_explosions


def test_loss_explosions_compare_the_last_finite_loss_with_the_first():
    history = History(loss={
        "steady": [2.0, 1.0, 0.5],
        "exploded": [2.0, float("nan"), 2.0 * EXPLOSION_FACTOR + 1],   # the NaN step was skipped
        "small_start": [1e-4, 900.0],                                   # floored at 1: 900 < 1000
        "negative": [-3.0, -1e5],                                        # magnitude, either sign
        "skipped_last": [2.0, 1.0, float("inf")],
        "one_step": [1e9],
    })
    found = loss_explosions(history)
    assert found == {"exploded": (2.0, 2001.0), "negative": (-3.0, -1e5)}
    assert all(math.isfinite(v) for pair in found.values() for v in pair)
