"""Data checks that wait for the training step's one host read.

A model that validates its input (``VAE`` data must be 0/1, ``RBM`` data
finite and binary) has to read a flag back from the device to raise: one
device-host synchronisation per check and per call.  Inside :func:`fit`'s
step, which reads the loss back once anyway, such a check can instead hand
its flag to :func:`check_or_defer`; the flags of the step ride along with the
loss in that one read, and the first failing check raises its own error
(with the same message it would have raised at once) before any update.

Outside a step (:func:`deferring_checks` not active) :func:`check_or_defer`
raises at once, so models behave the same when called directly.  Inside
:func:`torch.jit.trace` (Pyro's JIT ELBOs), where a host read would be frozen
into a constant, the check is compiled into the traced function instead
(:func:`~hybridpgm.train.traced_checks.assert_in_trace`).
"""

from __future__ import annotations

import contextvars
import functools
from typing import Callable, TypeVar

import torch

from hybridpgm.errors import DataError
from hybridpgm.train.traced_checks import DATA_NOTE, MODEL_NOTE, assert_in_trace, describe_check

__all__ = ["DeferredChecks", "check_or_defer", "checks_read_once", "deferring", "deferring_checks",
           "read_checks_once", "reading_is_free"]

_F = TypeVar("_F", bound=Callable)

_PENDING: contextvars.ContextVar["DeferredChecks | None"] = contextvars.ContextVar(
    "hybridpgm_deferred_checks", default=None)


def reading_is_free(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s value on the host costs no device synchronisation (it lives in CPU memory).

    An iteration that stops on a tolerance reads once per iteration; inside a training step it does so
    only where this holds, and elsewhere runs its fixed number of iterations.
    """
    return t.device.type == "cpu"


def deferring() -> bool:
    """Whether checks are deferred here (inside :func:`deferring_checks`, as in :func:`hybridpgm.fit`'s step, or
    a :class:`checks_read_once` block, read at its end): :func:`check_or_defer` then records a check without a
    host read, where outside both it reads at once."""
    return _PENDING.get() is not None


class DeferredChecks:
    """The checks deferred within one :func:`deferring_checks` block."""

    def __init__(self) -> None:
        self.flags: list[torch.Tensor] = []
        self.errors: list[Callable[[], Exception]] = []

    def add(self, ok: torch.Tensor, error: Callable[[], Exception]) -> None:
        self.flags.append(ok.reshape(()))
        self.errors.append(error)

    def all_passed(self, device: torch.device) -> torch.Tensor:
        """A 0-d bool tensor on ``device``: whether every deferred check passed (no sync)."""
        if not self.flags:
            return torch.ones((), dtype=torch.bool, device=device)
        if len(self.flags) == 1:
            return self.flags[0].to(device)
        return torch.stack([f.to(device) for f in self.flags]).all()

    def raise_first_failure(self) -> None:
        """Raise the error of the first failed check, if any (reads every flag: the error path)."""
        for ok, error in zip(self.flags, self.errors):
            if not bool(ok):
                raise error()


class deferring_checks:
    """Collect the checks of :func:`check_or_defer` made inside the block (``with deferring_checks() as
    pending``: a :class:`DeferredChecks`).  A plain class, not a generator-based context manager: ``fit``
    enters one per player and step.

    An exception leaving the block (not ``KeyboardInterrupt`` nor another ``BaseException``) comes after the
    failed checks made before it, whose flags it reads then: the first is raised in its place, as when each check
    read its flag at once (a neural table's NaN, deferred, named before the message of belief propagation that
    met it)."""

    __slots__ = ("pending", "token")

    def __enter__(self) -> DeferredChecks:
        self.pending = DeferredChecks()
        self.token = _PENDING.set(self.pending)
        return self.pending

    def __exit__(self, kind, *exc_info) -> None:
        _PENDING.reset(self.token)
        if kind is not None and issubclass(kind, Exception):  # the error path: a check made before comes first
            _raise_first_failure_before(self.pending)


def _raise_first_failure_before(pending: DeferredChecks) -> None:
    """Raise the first failed check of ``pending`` (reading each flag: an exception's path), not chained to the
    exception the block raised after it: a check read at once would have been raised before that exception (a
    NaN table's :class:`~hybridpgm.errors.ModelSpecError` before belief propagation's NaN message)."""
    for ok, error in zip(pending.flags, pending.errors):
        if not bool(ok):
            raise error() from None


class checks_read_once:
    """Read the checks :func:`check_or_defer` makes inside the block in one host read, at its end: a function that
    checks several tensors (a network's data columns) pays one device synchronisation, not one per tensor.  Inside
    an enclosing :func:`deferring_checks` (:func:`~hybridpgm.fit`'s step) the checks join that block's read
    instead, and this one does nothing.

    The first failed check raises its own error, in the order the checks were made; an exception raised inside
    the block (not a ``BaseException`` such as ``KeyboardInterrupt``) comes after the failed checks made before it
    (their flags are read then), as when each check read its flag at once.  One object may be entered again
    within itself; it is not shared between threads (:func:`read_checks_once` makes one per call)."""

    __slots__ = ("entered",)

    def __init__(self) -> None:
        #: per entry ``(pending, token)``, ``None`` inside an enclosing block: one object entered again within
        #: itself (``with block: with block:``) keeps each entry's own
        self.entered: list[tuple[DeferredChecks, contextvars.Token] | None] = []

    def __enter__(self) -> None:
        if _PENDING.get() is None:
            pending = DeferredChecks()
            self.entered.append((pending, _PENDING.set(pending)))
        else:
            self.entered.append(None)

    def __exit__(self, kind, *exc_info) -> None:
        entry = self.entered.pop()
        if entry is None:
            return
        pending, token = entry
        _PENDING.reset(token)
        if not pending.flags:
            return
        if kind is not None:  # not "during the handling of" a later exception it comes before
            if issubclass(kind, Exception):
                _raise_first_failure_before(pending)
        elif not bool(pending.all_passed(pending.flags[0].device)):
            pending.raise_first_failure()


def read_checks_once(function: _F) -> _F:
    """``function`` run inside a :class:`checks_read_once` block of its own at each call."""

    @functools.wraps(function)
    def read_once(*args, **kwargs):
        with checks_read_once():
            return function(*args, **kwargs)

    return read_once  # type: ignore[return-value]


def check_or_defer(ok: torch.Tensor, error: Callable[[], Exception], what: str | None = None,
                   kind: type = DataError, about_data: bool = True, note: str | None = None) -> None:
    """Raise ``error()`` unless the 0-d bool tensor ``ok`` is true; inside
    :func:`deferring_checks`, record the check instead (no host read).

    Inside :func:`torch.jit.trace` (Pyro's ``JitTrace_ELBO``, ``JitTraceEnum_ELBO``, ...) the check is compiled
    into the traced function (:func:`~hybridpgm.train.traced_checks.assert_in_trace`), deferred or not: the
    compiled function then checks every later batch and raises :class:`torch.jit.Error` naming ``kind`` with
    ``what`` and a note, since ``error()``, which reads the data to name the row and the value, cannot be built
    there.

    :param ok: a one-element bool tensor, computed on the data's device.
    :param error: builds the exception to raise (called only on failure).
    :param what: the check's fixed description for a traced function; ``None``: the name of ``error``
        (:func:`~hybridpgm.train.traced_checks.describe_check`).
    :param kind: the class of the exception ``error`` builds, named by a traced function's failure.
    :param about_data: whether the check is of the batch's data (a traced failure adds
        :data:`~hybridpgm.train.traced_checks.DATA_NOTE`: evaluate the batch eagerly) or of the model's
        parameters or arguments (:data:`~hybridpgm.train.traced_checks.MODEL_NOTE`: the batch is not at fault).
    :param note: the caller's own note for a traced failure, in place of those two.
    """
    if torch.jit.is_tracing():
        if not assert_in_trace(ok, what if what is not None else describe_check(error), kind,
                               note if note is not None else DATA_NOTE if about_data else MODEL_NOTE):
            raise error()  # the inputs being traced fail: their eager error, with the details
        return
    pending = _PENDING.get()
    if pending is None:
        if not bool(ok):
            raise error()
    else:
        pending.add(ok, error)
