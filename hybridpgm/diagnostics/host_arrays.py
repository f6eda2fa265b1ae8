"""Tensors and array-likes as NumPy arrays on the host, for the diagnostics that hand them to NumPy and ArviZ.

A diagnostic is often given what training left behind: a tensor that still
requires grad, or one on a CUDA device, which :func:`numpy.asarray` refuses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_host_array"]


def as_host_array(value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a NumPy array: a tensor detached from its graph and copied to host memory, anything else
    through :func:`numpy.asarray`; in ``dtype`` when one is given."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)
