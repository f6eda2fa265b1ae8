"""Keep a seeded helper's draws out of the caller's random streams.

:func:`hybridpgm.fit` seeds every global RNG from its ``seed`` and leaves them
where training left them, as training loops do.  The one-call recipes built on
it (:func:`~hybridpgm.diagnostics.train_classifier`,
:func:`~hybridpgm.gp.train_deep_kernel`, :func:`~hybridpgm.gp.train_gp_lstm`)
take a default seed, so a caller who computes a metric in the middle of an
experiment would find torch's, NumPy's and Python's streams reset to that seed
afterwards.  They run inside :func:`keeping_global_rngs`, reproducible from
their seed and leaving the caller's streams as they were.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["keeping_global_rngs"]


@contextlib.contextmanager
def keeping_global_rngs(seed: int | None = None) -> Iterator[None]:
    """Seed torch with ``seed`` inside, and restore torch's CPU generator and those of the CUDA devices already
    initialised, NumPy's global ``RandomState`` and Python's ``random`` on exit, also by an exception.

    ``seed=None`` is no scope at all: the draws inside come from the caller's streams and advance them.
    """
    if seed is None:
        yield
        return
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() \
        else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
