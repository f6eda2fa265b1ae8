"""Tensors and array-likes as NumPy arrays on the host, for the diagnostics that hand them to NumPy and ArviZ.

A diagnostic is often given what training left behind: a tensor that still
requires grad, one on a CUDA device, which :func:`numpy.asarray` refuses, or
one in a dtype NumPy lacks (``torch.bfloat16``, the ``float8`` types,
``torch.complex32``), which :meth:`torch.Tensor.numpy` refuses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hybridpgm.errors import DataError

__all__ = ["as_host_array"]


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A host tensor as a NumPy array; a floating-point dtype NumPy lacks (``bfloat16``, ``float8_*``) through
    ``float32`` and ``complex32`` through ``complex64``, both exact."""
    try:
        return tensor.numpy()
    except TypeError:  # "Got unsupported ScalarType BFloat16"
        if tensor.is_complex():
            return tensor.to(torch.complex64).numpy()
        if tensor.is_floating_point():
            return tensor.float().numpy()
        raise DataError(f"a tensor of dtype {tensor.dtype} (shape {tuple(tensor.shape)}) has no NumPy "
                        f"equivalent; convert it to a float or integer dtype first") from None


def as_host_array(value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a NumPy array: a tensor detached from its graph and copied to host memory, anything else
    through :func:`numpy.asarray`; in ``dtype`` when one is given.

    A tensor in a floating-point dtype NumPy lacks (``torch.bfloat16``, the ``float8`` types) becomes
    ``float32`` first (``torch.complex32``: ``complex64``), which holds each of its values exactly.

    :raises DataError: for a tensor of another dtype NumPy lacks (quantized, sub-byte or bits dtypes).
    """
    if isinstance(value, torch.Tensor):
        value = _tensor_to_numpy(value.detach().cpu())
    return np.asarray(value, dtype=dtype)
