"""Tensors and array-likes as NumPy arrays on the host, owned by the result, for the diagnostics that hand them
to NumPy and ArviZ.

A diagnostic is often given what training left behind: a tensor that still
requires grad, one on a CUDA device, which :func:`numpy.asarray` refuses, or
one in a dtype NumPy lacks (``torch.bfloat16``, the ``float8`` types,
``torch.complex32``), or a lazily conjugated or negated view (``z.conj()``, ``z.conj().imag``), which
:meth:`torch.Tensor.numpy` refuses.

The array returned never shares memory with the value given: :meth:`torch.Tensor.numpy` of a CPU tensor and
:func:`numpy.asarray` of an array are views of the caller's data, and ``arviz.from_dict`` does not copy either,
so an ``InferenceData`` built from them would change with later in-place edits of the caller's tensor, and
editing its values would write into that tensor (on a GPU the move to the host copies, so the behaviour would
depend on the device).  The data are copied once: by the move to the host, by a dtype conversion, or else
explicitly (a GPU tensor in a dtype NumPy lacks is moved, then converted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hybridpgm.errors import DataError

__all__ = ["as_host_array"]


def _tensor_to_numpy(tensor: torch.Tensor) -> tuple[np.ndarray, bool]:
    """``(array, fresh)``: ``tensor`` (detached, on any device) as a host NumPy array, and whether that array is
    new memory (``True`` where the move to the host or a dtype conversion made it) rather than a view of
    ``tensor``'s storage.  A floating-point dtype NumPy lacks (``bfloat16``, ``float8_*``) goes through
    ``float32`` and ``complex32`` through ``complex64``, both exact.  A lazily conjugated or negated view
    (``z.conj()``, ``z.conj().imag``: the conjugate or negative bit set, which :meth:`torch.Tensor.numpy`
    refuses) is resolved into new memory; a tensor without those bits is not copied for it."""
    host = tensor.cpu()
    if host.is_conj() or host.is_neg():
        host = host.resolve_conj().resolve_neg()
    moved = host.device != tensor.device or host.data_ptr() != tensor.data_ptr()
    try:
        return host.numpy(), moved
    except TypeError:  # "Got unsupported ScalarType BFloat16"
        if host.is_complex():
            return host.to(torch.complex64).numpy(), True
        if host.is_floating_point():
            return host.float().numpy(), True
        raise DataError(f"a tensor of dtype {tensor.dtype} (shape {tuple(tensor.shape)}) has no NumPy "
                        f"equivalent; convert it to a float or integer dtype first") from None


def as_host_array(value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a NumPy array that shares no memory with ``value``: a tensor detached from its graph and
    copied to host memory, anything else copied through :func:`numpy.array`; in ``dtype`` when one is given.

    The data are copied once, whatever the device: a CUDA tensor by its move to the host, a CPU tensor or an
    array by :func:`numpy.array` (with the dtype conversion, when ``dtype`` differs).  So later in-place edits
    of ``value`` do not reach the result, and edits of the result do not reach ``value``.

    A tensor in a floating-point dtype NumPy lacks (``torch.bfloat16``, the ``float8`` types) becomes
    ``float32`` first (``torch.complex32``: ``complex64``), which holds each of its values exactly.

    :raises DataError: for a tensor of another dtype NumPy lacks (quantized, sub-byte or bits dtypes).
    """
    if isinstance(value, torch.Tensor):
        array, fresh = _tensor_to_numpy(value.detach())
        if fresh:
            return np.asarray(array, dtype=dtype)
        value = array
    return np.array(value, dtype=dtype, copy=True)
