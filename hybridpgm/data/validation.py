"""Checks that turn bad data into a :class:`~hybridpgm.errors.DataError`."""

from __future__ import annotations

import torch

from hybridpgm.errors import DataError

__all__ = ["check_binary", "check_features", "check_finite"]


def check_finite(x: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Raise if ``x`` holds NaN or inf; return ``x``."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise DataError(f"{name} (shape {tuple(x.shape)}) holds {bad} NaN/inf value(s)")
    return x


def check_features(x: torch.Tensor, expected: int, name: str = "data") -> torch.Tensor:
    """Raise unless ``x`` is ``N x expected``; return ``x``."""
    if x.dim() != 2 or x.shape[1] != expected:
        raise DataError(f"{name} has shape {tuple(x.shape)}, expected (N, {expected})")
    return x


def check_binary(x: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Raise unless every entry of ``x`` is 0 or 1; return ``x``."""
    if not bool(((x == 0) | (x == 1)).all()):
        raise DataError(f"{name} (shape {tuple(x.shape)}) must be binary (0/1); binarize it first")
    return x
