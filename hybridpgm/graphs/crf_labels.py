"""The labels a :class:`~hybridpgm.graphs.LinearChainCRF` scores: integer label sequences on its device that end
in its event shape ``(T,)`` and broadcast with its batch shape, each label (within its sequence's length) in
``0..L-1``.

The label-range check runs with validation off too, wherever values can be read, and then costs no device-host
synchronisation of its own: the condition "every label within its sequence's length is in ``0..L-1``" is a
device flag handed to :func:`~hybridpgm.train.deferred_checks.check_or_defer`.  Inside :func:`hybridpgm.fit`'s
step it joins the step's one host read (the step raises the :class:`~hybridpgm.errors.EvidenceError` before any
update); called directly, it is read at once and raises there.  Until the flag is read the labels are scored
clamped into ``0..L-1``, so an out-of-range label cannot fail in torch's indexing first (on CUDA a device-side
assert); a batch with such a label is never used, as its step raises.  With validation on the check is
immediate, as every other check of validation.

Values cannot be read under :func:`torch.func.vmap` (batched tensors), while :func:`torch.compile`,
:func:`torch.export.export` or :func:`torch.jit.trace` trace the code (fake or traced tensors: a read would break
the graph, fail, or be frozen into the trace), or on the ``meta`` device (no values).  There, with validation
off, nothing is checked or clamped, and an out-of-range label fails in torch's own indexing, as in torch's
distributions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hybridpgm.errors import DeviceError, EvidenceError
from hybridpgm.train.deferred_checks import check_or_defer
from hybridpgm.transform_scope import under_vmap

if TYPE_CHECKING:  # pragma: no cover
    from hybridpgm.graphs.crf import LinearChainCRF

__all__ = ["check_labels", "values_readable"]


def values_readable(value: torch.Tensor) -> bool:
    """Whether the values of ``value`` can be read on the host here: not under :func:`torch.func.vmap`, not while
    :func:`torch.compile` / :func:`torch.export.export` / :func:`torch.jit.trace` trace, not on ``meta``.

    :param value: the tensor to be read.
    :returns: ``True`` in plain eager code on a device with values."""
    return not (value.device.type == "meta" or under_vmap() or torch.compiler.is_compiling()
                or torch.jit.is_tracing())


def check_labels(crf: "LinearChainCRF", value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Check labels ``value`` of ``crf`` that broadcast with its ``batch_shape + (T,)`` (extra leading dims are
    sample or particle dims), as :meth:`LinearChainCRF.score <hybridpgm.graphs.LinearChainCRF.score>` takes them,
    and return them as it gathers them.

    :param crf: the distribution whose labels these are.
    :param value: the labels.
    :param mask: ``batch_shape + (T,)`` bool, true within each sequence's length (``crf._mask()``).
    :returns: the broadcast labels as ``long``, 0 past each sequence's length; with validation off where
        :func:`values_readable`, clamped into ``0..L-1`` (the range check may wait for :func:`hybridpgm.fit`'s
        host read; see the module docstring).
    :raises EvidenceError: a value that does not end in ``(T,)``, does not broadcast with the batch shape,
        is not integer, or holds a label outside ``0..L-1`` at a position within its sequence's length (with
        validation on, or off where :func:`values_readable`: at once outside :func:`hybridpgm.fit`, at the
        step's host read inside it), naming the shapes or the label and its index; a value that is not a tensor,
        naming its type.
    :raises DeviceError: labels on another device than the CRF's potentials, naming both devices.
    """
    if not torch.is_tensor(value):
        raise EvidenceError(f"LinearChainCRF: labels must be a torch.Tensor of label indices, got "
                            f"{type(value).__name__} (convert it: torch.as_tensor(labels))")
    if value.device != crf.unary.device:
        raise DeviceError(f"LinearChainCRF: labels are on device {value.device}, the CRF's potentials on "
                          f"{crf.unary.device}; move the labels (labels.to({str(crf.unary.device)!r}))")
    if value.shape[-1:] != crf.event_shape:
        raise EvidenceError(f"LinearChainCRF: labels must end in {tuple(crf.event_shape)}, "
                            f"got shape {tuple(value.shape)}")
    try:
        torch.broadcast_shapes(value.shape[:-1], crf.batch_shape)
    except RuntimeError:
        raise EvidenceError(f"LinearChainCRF: labels of shape {tuple(value.shape)} do not broadcast with the "
                            f"batch shape {tuple(crf.batch_shape)} + event shape {tuple(crf.event_shape)}"
                            ) from None
    if value.is_complex():
        raise EvidenceError(f"LinearChainCRF: labels must be integers, got dtype {value.dtype}")
    if value.dtype.is_floating_point and bool(((value != value.round()) | value.isinf()).any()):
        raise EvidenceError("LinearChainCRF: labels must be integers (finite, integer-valued)")
    if crf._validate_args:
        _check_range_now(crf, value)
    labels = torch.where(mask, value.long(), 0)  # padding may hold any integer
    if crf._validate_args or not values_readable(value):
        return labels
    clamped = labels.clamp(0, crf.num_labels - 1)  # until the deferred check is read: no raw indexing error
    check_or_defer((clamped == labels).all(), lambda: _out_of_range(crf, value)
                   or EvidenceError(f"LinearChainCRF: labels outside the label set 0..{crf.num_labels - 1}"),
                   f"LinearChainCRF: labels outside the label set 0..{crf.num_labels - 1}", EvidenceError)
    return clamped


def _check_range_now(crf: "LinearChainCRF", value: torch.Tensor) -> None:
    """Raise :func:`_out_of_range`'s error, if any, at once (validation on: host reads)."""
    if value.numel() and value.dtype != torch.bool:  # fast path (one reduction): every entry, padding too, fits
        low, high = torch.aminmax(value)
        if int(low) >= 0 and int(high) < crf.num_labels:
            return
    error = _out_of_range(crf, value)
    if error is not None:
        raise error


def _out_of_range(crf: "LinearChainCRF", value: torch.Tensor) -> EvidenceError | None:
    """The error naming the first label outside ``0..L-1`` within its sequence's length, or ``None`` (reads
    values: the check's error path)."""
    value, mask = torch.broadcast_tensors(value, crf._mask())
    bad = mask & ((value < 0) | (value >= crf.num_labels))
    if not bool(bad.any()):
        return None
    pos = bad.nonzero()[0].tolist()
    return EvidenceError(f"LinearChainCRF: label {value[tuple(pos)].item()} at index {pos} is outside "
                         f"the label set 0..{crf.num_labels - 1}")
