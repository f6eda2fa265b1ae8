"""The seed of one layer's initial weights in a greedy layer-wise pretraining (:meth:`hybridpgm.energy.DBM.pretrain`).

A pretraining run with ``seed`` builds layer ``l``'s RBM under :func:`~hybridpgm.rng_scope.keeping_global_rngs`
seeded with :func:`layer_seed`, so that its random initialisation depends on ``(seed, l)`` alone, not on the
caller's global streams, and the caller's streams do not move.
"""

from __future__ import annotations

import numpy as np

from hybridpgm.checks import seed_of

__all__ = ["layer_seed"]


def layer_seed(seed, layer: int, what: str) -> int | None:
    """The seed of the initial weights of layer ``layer`` of a pretraining with ``seed``: ``(seed, layer)`` hashed
    by NumPy's :class:`~numpy.random.SeedSequence` to a 32-bit integer, so layers differ and no layer's seed is
    another run's ``seed``.

    :param seed: the pretraining's seed (an integer in torch's range, :func:`~hybridpgm.checks.seed_of`), or
        ``None``: no seed (the initialisation draws from the caller's stream), and ``None`` is returned.
    :param int layer: the layer's index (``0``: the bottom RBM).
    :param str what: the seed as the message names it (``"DBM.pretrain seed"``).
    :raises ConfigError: ``seed`` is not an integer (a range :func:`hybridpgm.fit` refuses is left to it).
    """
    if seed is None:
        return None
    seed = seed_of(seed, what)
    return int(np.random.SeedSequence([seed % 2**64, layer]).generate_state(1, np.uint32)[0])
