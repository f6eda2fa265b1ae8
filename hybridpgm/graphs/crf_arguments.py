"""The arguments a :class:`~hybridpgm.graphs.LinearChainCRF` is built from: its potentials and its lengths.

:func:`checked_arguments` is the constructor's check.  Without a read of any value it refuses a potential that is
no tensor or not of a floating dtype (bool, integer, complex), shapes that do not end in ``(T, L)``, ``(L, L)``
and ``(L,)`` or whose batch shapes do not broadcast, potentials on different devices, and lengths that are no
numbers or not of an integer dtype (``.long()`` would truncate ``2.5`` silently); with validation on it also reads
the values (the one host read of a valid CRF) and refuses NaN or
:math:`+\\infty` in a potential (in ``unary`` within a sequence's length only: the padding may hold anything) and a
length outside ``0..T`` (0: an empty sequence).  With validation off a length outside ``0..T`` is refused too
wherever that costs no device synchronisation (:func:`_check_lengths_unvalidated`).  A :math:`-\\infty` score is
allowed: it forbids a label or a transition.  Validation reads values, which :func:`torch.func.vmap`'s batched
tensors cannot give: under ``vmap`` a validating CRF raises :class:`~hybridpgm.errors.ConfigError` with
:data:`VMAP_VALIDATION` (:func:`~hybridpgm.transform_scope.vmap_reads_refused`).
"""

from __future__ import annotations

import functools

import torch

from hybridpgm.checks import torch_readable
from hybridpgm.errors import DeviceError, ModelSpecError
from hybridpgm.meta_data import META_ORIGIN, refuse_meta
from hybridpgm.graphs.crf_labels import values_readable
from hybridpgm.sequence_lengths import lengths_tensor
from hybridpgm.train.deferred_checks import check_or_defer, deferring, reading_is_free
from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["VMAP_VALIDATION", "checked_arguments"]

#: the error of a validating CRF under ``vmap`` (:func:`~hybridpgm.transform_scope.vmap_reads_refused`)
VMAP_VALIDATION = ("LinearChainCRF: validation (validate_args, on by torch's default) reads the potentials, "
                   "lengths and labels on the host, which torch.func.vmap's batched tensors cannot give; under "
                   "vmap build the CRF with validate_args=False (the queries themselves run under vmap), or pass "
                   "the batch as the CRF's leading batch dimensions instead")


def checked_arguments(unary, transition, start, end, lengths, validate: bool):
    """The arguments of :class:`~hybridpgm.graphs.LinearChainCRF` checked, as the constructor documents.

    :param unary: ``batch_shape + (T, L)`` unary log-potentials.
    :param transition: ``batch_shape + (L, L)`` (broadcastable) transition scores.
    :param start: ``batch_shape + (L,)`` start scores, or ``None`` (zeros).
    :param end: ``batch_shape + (L,)`` end scores, or ``None`` (zeros).
    :param lengths: ``batch_shape`` sequence lengths (any integer dtype, any device), or ``None`` (all ``T``).
    :param validate: also read the values (NaN, :math:`+\\infty`, lengths outside ``0..T``).
    :returns: ``(start, end, lengths, batch_shape)``: the boundary scores (zeros of ``unary``'s dtype for
        ``None``), the lengths as a tensor on ``unary``'s device (not yet converted to long, nor expanded) and the
        broadcast batch shape.
    :raises ModelSpecError: as :class:`~hybridpgm.graphs.LinearChainCRF` says, naming the tensor and, for a
        value, its index.
    :raises DeviceError: ``transition``, ``start`` or ``end`` on another device than ``unary``.
    """
    for name, t in (("unary", unary), ("transition", transition), ("start", start), ("end", end)):
        if t is not None and not torch.is_tensor(t):
            raise ModelSpecError(f"LinearChainCRF: {name} must be a torch.Tensor of log-potentials, got "
                                 f"{type(t).__name__} (convert it: torch.as_tensor(x, dtype=torch.float32))")
        if t is not None and not t.is_floating_point():  # a dtype, no value read: with validation off too
            why = (" (a mask of allowed labels is not a score: pass torch.where(mask, 0.0, float('-inf')))"
                   if t.dtype == torch.bool else " (log-potentials are real)" if t.is_complex() else
                   " (integers would be widened to float32, inexactly past 2**24: pass x.float() or x.double())")
            raise ModelSpecError(f"LinearChainCRF: {name} log-potentials must be real floating-point scores, got "
                                 f"dtype {t.dtype}{why}")
    if unary.dim() < 2:
        raise ModelSpecError(f"LinearChainCRF: unary must be batch_shape + (T, L), got {tuple(unary.shape)}")
    T, L = unary.shape[-2:]
    if T < 1 or L < 1:
        raise ModelSpecError(f"LinearChainCRF: unary has T={T}, L={L}; both must be >= 1")
    if transition.dim() < 2 or transition.shape[-2:] != (L, L):
        raise ModelSpecError(f"LinearChainCRF: transition must end in ({L}, {L}), got {tuple(transition.shape)}")
    zeros = unary.new_zeros(L)
    start = zeros if start is None else start
    end = zeros if end is None else end
    for name, t in (("start", start), ("end", end)):
        if t.dim() < 1 or t.shape[-1] != L:
            raise ModelSpecError(f"LinearChainCRF: {name} must end in ({L},), got {tuple(t.shape)}")
    for name, t in (("transition", transition), ("start", start), ("end", end)):
        if t.device != unary.device:  # else torch's error from inside the recursions (or .item() on meta)
            raise DeviceError(f"LinearChainCRF: {name} is on device {t.device}, unary on device {unary.device}; "
                              f"put the potentials on one device (a CRFHead: head.to({str(unary.device)!r}))")
    given = lengths
    try:  # one length per CRF of the potentials' batch (one unary under a batch of transitions too)
        batch_shape = torch.broadcast_shapes(unary.shape[:-2], transition.shape[:-2], start.shape[:-1],
                                             end.shape[:-1])
        lengths = lengths_tensor(lengths, batch_shape, T, unary.device, "LinearChainCRF", ModelSpecError, lowest=0)
        batch_shape = torch.broadcast_shapes(batch_shape, lengths.shape)
    except RuntimeError as e:
        raise ModelSpecError("LinearChainCRF: batch shapes of unary, transition, start, end, lengths "
                             "do not broadcast") from e
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        # every non-integer dtype (bfloat16 too), integer-valued or not: .long() would truncate silently; a dtype,
        # no value read, so with validation off too
        raise ModelSpecError(f"LinearChainCRF: lengths must be integers in 0..{T}, got dtype {lengths.dtype}")
    if validate:
        refuse_meta(unary, "LinearChainCRF: unary", "validation (validate_args, on by torch's default) reads the "
                    "potentials' values; build the CRF with validate_args=False to query shapes on meta, or make "
                    f"the potentials on a device that holds data ({META_ORIGIN})")
        with vmap_reads_refused(VMAP_VALIDATION):  # the checks read values
            _check_values(unary, transition, start, end, lengths)
    else:
        _check_lengths_unvalidated(given, lengths, T)
    return start, end, lengths, batch_shape


def _outside(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Where a length is outside ``0..T`` (no read)."""
    return (lengths < 0) | (lengths > T)


def _lengths_error(lengths: torch.Tensor, T: int) -> ModelSpecError:
    """The error naming the first length outside ``0..T``, its index and how many are (reads ``lengths``)."""
    outside = _outside(lengths, T)
    pos = outside.nonzero()[0].tolist()
    return ModelSpecError(f"LinearChainCRF: lengths must be integers in 0..{T}, got {int(lengths[tuple(pos)])} at "
                          f"index {pos} ({int(outside.sum())} of {outside.numel()} outside)")


def _check_lengths_unvalidated(given, lengths: torch.Tensor, T: int) -> None:
    """With validation off, refuse a length outside ``0..T`` (a :class:`~hybridpgm.errors.ModelSpecError`, the
    message of validation's) wherever that costs no device synchronisation: inside :func:`hybridpgm.fit`'s step
    deferred to the step's one host read (:func:`~hybridpgm.train.deferred_checks.check_or_defer`), elsewhere
    read at once where the lengths were given on the host (a CPU tensor, numbers: read as given, also for a CRF on
    an accelerator) or the CRF is on the CPU.  Not checked where values cannot be read
    (:func:`~hybridpgm.graphs.crf_labels.values_readable`: ``vmap``, tracing, ``meta``) and, outside ``fit``, for
    lengths given as a tensor on an accelerator:
    there, as before, a negative length reads scores before the sequence (numbers without meaning) and one above
    ``T`` past its end (torch's index error, a device-side assert on CUDA).

    Without this, a negative length gave a finite log Z and log-probability of no labelling at all."""
    if given is None or not values_readable(lengths):  # None: every sequence at its full length T
        return
    if deferring():  # fit's step (or a checks_read_once block): no read of its own, even a free one
        check_or_defer(~_outside(lengths, T).any(), lambda: _lengths_error(lengths, T),
                       f"LinearChainCRF: lengths outside 0..{T}", ModelSpecError, about_data=False)
        return
    if isinstance(given, torch.Tensor):
        host = given if reading_is_free(given) else lengths if reading_is_free(lengths) else None
    else:  # numbers (a list, a NumPy array, a Series): host memory, whatever the CRF's device
        host = lengths if reading_is_free(lengths) else torch.as_tensor(torch_readable(given, "LinearChainCRF lengths"))
    if host is not None and bool(_outside(host, T).any()):  # a read of host memory: no synchronisation
        raise _lengths_error(host, T)


def _check_values(unary, transition, start, end, lengths) -> None:
    """Validation's reads: the lengths integers in ``0..T``, no NaN or :math:`+\\infty` in a potential (in
    ``unary`` within a sequence's length only).  One host read where all is well; the message's reads only
    where a check fails.  Under :func:`torch.jit.trace` a host read would be frozen into the trace (a traced decode
    would answer for a length past ``T`` or a NaN potential): there each check is compiled into the trace instead
    (:func:`~hybridpgm.train.deferred_checks.check_or_defer`), and the traced function raises
    :class:`torch.jit.Error` naming ``ModelSpecError`` and the check."""
    T = unary.shape[-2]
    tracing = torch.jit.is_tracing()
    if tracing:
        check_or_defer(~_outside(lengths, T).any(), lambda: _lengths_error(lengths, T),
                       f"LinearChainCRF: lengths outside 0..{T}", ModelSpecError, about_data=False)
    elif bool(_outside(lengths, T).any()):  # the one host read; the message's reads only where it fails
        raise _lengths_error(lengths, T)
    inside = (torch.arange(T, device=unary.device) < lengths[..., None])[..., None]  # padding is ignored
    for name, t in (("unary", unary), ("transition", transition), ("start", start), ("end", end)):
        bad = torch.isnan(t) | (t == float("inf"))  # -inf is a forbidden label / transition
        if name == "unary":
            bad = bad & inside
        if tracing:
            check_or_defer(~bad.any(), functools.partial(_potential_error, name, t, bad),
                           f"LinearChainCRF: {name} log-potentials contain NaN or inf", ModelSpecError,
                           about_data=False)
        elif bool(bad.any()):
            raise _potential_error(name, t, bad)


def _potential_error(name: str, t: torch.Tensor, bad: torch.Tensor) -> ModelSpecError:
    """The error naming the first NaN or :math:`+\\infty` entry of potential ``name`` (reads ``t``)."""
    pos = bad.nonzero()[0].tolist()
    return ModelSpecError(f"LinearChainCRF: {name} log-potentials contain NaN or inf: "
                          f"{float(t.expand(bad.shape)[tuple(pos)])} at index {pos}"
                          + (" (within the sequence's length)" if name == "unary" else "")
                          + "; -inf (a forbidden label or transition) is allowed")
