"""Checks of what :func:`hybridpgm.fit` is given under ``torchrun``: the collective timeout, the device, sparse
gradients, the data.

* :func:`collective_timeout_s`: ``fit(collective_timeout=...)`` or the environment variable
  ``HYBRIDPGM_DIST_TIMEOUT``, positive and finite seconds (a bare ``float()`` let ``"abc"`` raise a raw
  ``ValueError`` and ``"inf"`` a raw ``OverflowError`` from :class:`datetime.timedelta`, naming neither).
* :func:`rank_device`: under several ranks each rank runs on the device its process group pinned it to
  (``cuda:LOCAL_RANK`` on NCCL, the CPU on gloo); ``fit(device=...)`` is still validated as in one process and
  may name that device, never another (``device="cpu"`` under NCCL trained on the GPU, silently).
* :func:`refuse_sparse_gradients` and :func:`sparse_gradient_error`: the gradients' all-reduce flattens every
  gradient into one dense bucket; a sparse gradient (``nn.Embedding(..., sparse=True)``) failed there with
  torch's raw "reshape is not implemented for sparse tensors", naming no parameter.
* :func:`data_fingerprint`: every rank passes the whole data set, which ``fit`` shards; ranks passing their own
  shards of one size are told so at the start, in the one configuration check ``fit`` already makes.
"""

from __future__ import annotations

import contextlib
import math
import os
import random

import numpy as np
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.device import resolve_device

__all__ = ["collective_timeout_s", "data_fingerprint", "rank_device", "refuse_sparse_gradients",
           "sparse_gradient_error"]

#: the environment variable that sets the collective timeout when ``fit`` is given none
TIMEOUT_VARIABLE = "HYBRIDPGM_DIST_TIMEOUT"


def collective_timeout_s(timeout_s: float | None, backend: str, defaults: dict[str, float]) -> float:
    """The collective timeout in seconds: ``timeout_s``, else ``HYBRIDPGM_DIST_TIMEOUT``, else ``defaults`` of the
    backend (300 s for a backend it does not list).

    :raises ConfigError: a value that is not a number, or not positive and finite (NaN, ``inf``, ``1e400``, 0,
        negative), naming ``HYBRIDPGM_DIST_TIMEOUT`` and its text where it came from there."""
    source = "the collective timeout"
    if timeout_s is None:
        env = os.environ.get(TIMEOUT_VARIABLE)
        if env:
            source = f"{TIMEOUT_VARIABLE}={env!r}"
            try:
                timeout_s = float(env)
            except ValueError:
                raise ConfigError(f"{source} is not a number of seconds; set it to positive finite seconds "
                                  f"({TIMEOUT_VARIABLE}=60) or unset it") from None
        else:
            timeout_s = defaults.get(str(backend), 300.0)
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ConfigError(f"{source} must be positive finite seconds, got {timeout_s!r}")
    return float(timeout_s)


def rank_device(device: str | torch.device | None, own: torch.device, world_size: int) -> torch.device:
    """The device ``fit`` trains on: ``resolve_device(device)`` in one process; under ``world_size > 1`` ranks the
    rank's own device ``own``, after ``device`` is validated as in one process and checked to name it
    (``"auto"``/``None``, its type, or itself with its index).

    :raises ConfigError: a malformed or unsupported device name (:func:`~hybridpgm.train.device.resolve_device`), or
        one naming another device than the rank's (``"cpu"`` under NCCL, ``"cuda:1"`` on the rank of ``cuda:0``),
        naming both.
    :raises DeviceError: CUDA on a machine without it, or a GPU index that does not exist."""
    resolved = resolve_device(device)
    if world_size <= 1:
        return resolved
    if device is None or device == "auto":
        return own
    if resolved.type != own.type or (resolved.index is not None and resolved.index != own.index):
        backend = "NCCL" if own.type == "cuda" else "gloo"
        raise ConfigError(f"fit(device={device!r}) under torchrun, but this rank's process group ({backend}) runs on "
                          f"{str(own)!r}: every rank trains on its own device (cuda:LOCAL_RANK on NCCL, when "
                          "CUDA is available; the CPU on gloo); pass device='auto' or the rank's device")
    return own


def _sparse_modules(module: torch.nn.Module) -> list[str]:
    """The names of the sub-modules of ``module`` that make sparse gradients (``Embedding``/``EmbeddingBag`` with
    ``sparse=True``)."""
    return [name or type(m).__name__ for name, m in module.named_modules()
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse]


def refuse_sparse_gradients(module: torch.nn.Module, what: str, world_size: int) -> None:
    """Refuse, before the first step on several ranks, a module that makes sparse gradients: the gradients'
    all-reduce is one dense bucket (one process trains it as it is).

    :param module: the objective's module.
    :param what: its name in the message (``"VAE.module"``).
    :raises ConfigError: under ``world_size > 1``, naming the sub-modules with ``sparse=True``."""
    if world_size <= 1:
        return
    sparse = _sparse_modules(module)
    if sparse:
        raise ConfigError(f"{what} has sparse gradients ({', '.join(repr(n) for n in sparse)}: sparse=True), which "
                          f"fit cannot all-reduce over {world_size} ranks (the gradients travel as one dense bucket); "
                          "build them with sparse=False (dense gradients: torch.optim.Adam instead of SparseAdam), or "
                          "train in one process")


def sparse_gradient_error(params: list[torch.nn.Parameter], world_size: int) -> ConfigError | None:
    """The error for the parameters of ``params`` whose gradient is not a dense (strided) tensor, ``None`` where
    none is (the error path of the gradients' all-reduce: a sparse gradient that :func:`refuse_sparse_gradients`
    could not see, made by a sparse operation of the loss)."""
    sparse = [f"#{i} of shape {tuple(p.shape)} ({p.grad.layout})" for i, p in enumerate(params)
              if p.grad is not None and p.grad.layout != torch.strided]
    if not sparse:
        return None
    return ConfigError(f"the player's parameter(s) {', '.join(sparse)} have sparse gradients, which fit cannot "
                       f"all-reduce over {world_size} ranks (the gradients travel as one dense bucket); make the "
                       "loss give dense gradients (nn.Embedding(..., sparse=False)), or train in one process")


#: the key of :func:`data_fingerprint` in the configuration the ranks compare (its text is the message's advice)
DATA_KEY = ("data (a checksum of its first, middle and last examples: every rank passes the whole data set, "
            "which fit shards)")


def data_fingerprint(dataset, world_size: int) -> float | None:
    """A checksum of ``dataset`` that the ranks compare at the start of ``fit`` (in the configuration of
    :meth:`~hybridpgm.train.distributed.DistributedContext.check_same`: no collective of its own): the float64 sum
    of the tensors of its examples ``0``, ``N // 2`` and ``N - 1`` (NaN read as 0, infinities as +-1), read with the
    global RNGs seeded (:func:`_fixed_draws`: a data set drawn at each read checksums alike on every rank).

    ``fit`` shards the data itself, every rank taking its rows of one permutation: ranks that each pass their own
    shard of one size (rows 0..7 on rank 0, 8..15 on rank 1) were sharded again, silently, one epoch seeing half
    of the rows.  Their checksums differ, and :meth:`check_same` names them.  ``None`` in one process (no read).

    :param dataset: the map-style dataset ``fit`` trains on.
    :param int world_size: the number of ranks."""
    if world_size <= 1:
        return None
    n = len(dataset)
    with _fixed_draws():
        return sum((_checksum(dataset[i]) for i in sorted({0, n // 2, n - 1})), 0.0)


@contextlib.contextmanager
def _fixed_draws():
    """Within it the global torch (CPU and initialised CUDA devices), NumPy and Python RNGs are seeded with 0, and
    restored after: a data set that draws as it reads (:class:`~hybridpgm.data.DynamicBinarized`, a random
    augmentation) reads the same on every rank, whatever the rank's RNG (``fit`` leaves it where the rank-mixed
    seed of the previous run left it; a script may seed per rank), and the check uses up no random number."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    python, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(0)  # not torch.manual_seed: it queues a seed for a CUDA not yet started
        if devices:
            torch.cuda.manual_seed_all(0)
        random.seed(0)
        np.random.seed(0)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy_state)


def _checksum(example) -> float:
    """The float64 sum of the tensors (and numbers) of one example: a tensor, or a tuple, list or dict of them."""
    if isinstance(example, dict):
        return sum((_checksum(v) for v in example.values()), 0.0)
    if isinstance(example, (tuple, list)):
        return sum((_checksum(v) for v in example), 0.0)
    if isinstance(example, torch.Tensor):
        t = torch.view_as_real(example.detach()) if example.is_complex() else example.detach()
        return float(torch.nan_to_num(t.to(torch.float64), nan=0.0, posinf=1.0, neginf=-1.0).sum())
    if isinstance(example, (int, float)) and not isinstance(example, bool):
        return float(example) if math.isfinite(example) else 0.0
    return 0.0
