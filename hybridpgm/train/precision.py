"""``fit``'s ``precision`` option: the autocast context a precision name opens on a device.

``None``/``"fp32"`` computes in full precision (no autocast); ``"bf16"`` and ``"fp16"`` run each micro-batch's loss
under :func:`torch.autocast` with :data:`torch.bfloat16` or :data:`torch.float16` (``"fp16"`` also gives each player
a gradient scaler: :mod:`hybridpgm.train.scaler_step`).  Used by :func:`~hybridpgm.train.trainer.fit` (which
validates the name before the first step) and :class:`~hybridpgm.train.player_step.Player` (around each
micro-batch).

Reference: P. Micikevicius et al., *Mixed Precision Training*, ICLR 2018.
"""

from __future__ import annotations

import contextlib

import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.autocast_probe import autocast_cache_drops_grad

__all__ = ["PRECISIONS", "autocast_for"]

#: precision name -> autocast dtype (``None``: full precision, no autocast)
PRECISIONS = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


#: the context of full precision, shared (``nullcontext`` is reusable): one object less per micro-batch
_FULL_PRECISION = contextlib.nullcontext()


def autocast_for(precision: str | None, device: torch.device):
    """The autocast context of a precision on a device (a no-op for fp32).

    Autocast's cache of weight casts is on, except on a torch whose cache hands a gradient pass a cast made under
    ``torch.no_grad()`` (:func:`~hybridpgm.train.autocast_probe.autocast_cache_drops_grad`, asked once per
    process): there ``cache_enabled=False``.

    :param precision: a key of :data:`PRECISIONS`.
    :param torch.device device: the device the step runs on.
    :raises ConfigError: an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(k for k in PRECISIONS if k)} or None, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return _FULL_PRECISION
    if autocast_cache_drops_grad():
        return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)
