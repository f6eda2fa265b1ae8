"""Keep a helper's draws out of the caller's random streams.

:func:`hybridpgm.fit` seeds every global RNG from its ``seed`` and leaves them
where training left them, as training loops do.  The one-call recipes built on
it (:func:`~hybridpgm.diagnostics.train_classifier`,
:func:`~hybridpgm.gp.train_deep_kernel`, :func:`~hybridpgm.gp.train_gp_lstm`)
take a default seed, so a caller who computes a metric in the middle of an
experiment would find torch's, NumPy's and Python's streams reset to that seed
afterwards.  They run inside :func:`keeping_global_rngs`, reproducible from
their seed and leaving the caller's streams as they were.

:func:`restoring_global_rngs` is the same scope without a seed: the draws inside come from the caller's streams,
which are put back on exit.  :func:`hybridpgm.load` rebuilds a model inside it (the constructor's random
initialisation, overwritten by the saved weights, does not move the caller's streams), and
:class:`~hybridpgm.train.EvaluateEvery` runs its evaluation inside it (a Monte Carlo metric does not change the
trained model).
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterable, Iterator

import numpy as np
import torch

__all__ = ["cuda_indices", "keeping_global_rngs", "restoring_global_rngs"]


def cuda_indices(devices: Iterable[torch.device | str | int] | None) -> list[int]:
    """The CUDA device indices among ``devices`` (CPU entries dropped, ``"cuda"`` without an index is the
    current device, an ``int`` is a CUDA index), sorted and without repeats.  ``None``: the CUDA devices
    already initialised (none when CUDA is not), so that nothing initialises CUDA just to save its state."""
    if devices is None:
        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else []
    indices = set()
    for device in devices:
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if device.type == "cuda":
            indices.add(device.index if device.index is not None else torch.cuda.current_device())
    return sorted(indices)


@contextlib.contextmanager
def restoring_global_rngs(devices: Iterable[torch.device | str | int] | None = None) -> Iterator[None]:
    """Draw from the caller's streams inside, and restore torch's CPU generator, those of the CUDA ``devices``,
    NumPy's global ``RandomState`` and Python's ``random`` on exit, also by an exception (what
    ``pyro.util.get_rng_state``/``set_rng_state`` keep, and the CUDA generators).

    :param devices: the devices whose CUDA generators the code inside may draw from (see :func:`cuda_indices`;
        CPU entries are ignored); ``None``: the CUDA devices already initialised.
    """
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda_indices(devices)):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


@contextlib.contextmanager
def keeping_global_rngs(seed: int | None = None) -> Iterator[None]:
    """Seed torch with ``seed`` inside, and restore torch's CPU generator and those of the CUDA devices already
    initialised, NumPy's global ``RandomState`` and Python's ``random`` on exit, also by an exception.

    ``seed=None`` is no scope at all: the draws inside come from the caller's streams and advance them.
    """
    if seed is None:
        yield
        return
    with restoring_global_rngs():
        torch.manual_seed(seed)
        yield
