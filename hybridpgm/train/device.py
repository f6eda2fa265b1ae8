"""Device selection: ``"auto" | "cpu" | "cuda" | "cuda:N"``."""

from __future__ import annotations

import torch

from hybridpgm.errors import ConfigError, DeviceError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a device request into a :class:`torch.device`.

    ``"auto"`` (or ``None``) picks CUDA when it is available, else the CPU.

    :raises ConfigError: for a malformed name (``"gpu"``), a value that is not a device name (``3.5``) or a
        device type other than the CPU and CUDA (``"meta"``), naming the value: bad input, a ``ValueError``.
    :raises DeviceError: for CUDA on a machine without it, or a GPU index that does not exist.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"device {device!r} requested but only {count} CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return resolved
