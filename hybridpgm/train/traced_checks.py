"""Data checks that hold inside a function compiled by :func:`torch.jit.trace`.

A check that reads its flag on the host (``if not bool(ok): raise ...``) is frozen by :func:`torch.jit.trace`
into the value the flag had while tracing: the compiled function (Pyro's ``JitTrace_ELBO``,
``JitTraceEnum_ELBO``, ... compile the model and guide so) then never checks a later batch, and bad data is
scored as if it were valid.  While tracing, :func:`assert_in_trace` instead records a call of a small
TorchScript function (compiled by :func:`~hybridpgm.torchscript.script_function`, which leaves the process's
warning filters alone) that raises when the flag is false; the trace keeps that call, so the compiled function
checks every batch it is given.  The flag is computed on the device as before and
read there once per check, as the eager check reads it.

What is lost: the compiled check cannot build the eager error, which names the row and the value by reading the
data, so it carries the check's fixed description alone; and it reaches the caller as :class:`torch.jit.Error`
(an :class:`Exception`, neither a :class:`~hybridpgm.errors.HybridPGMError` nor a :class:`RuntimeError`), whose
message ends with the eager error's class and the description (``hybridpgm.errors.EvidenceError: ...``; one
scripted raiser per class).  :func:`assert_in_trace` says so once per process with a
:class:`~hybridpgm.errors.TrainingWarning`, attributed to the user's line past Pyro's and torch's frames.
"""

from __future__ import annotations

import contextvars
import warnings

import torch
from pyro.infer.util import is_validation_enabled

from hybridpgm.errors import ConfigError, DataError, EvidenceError, ModelSpecError, ObjectiveError, TrainingWarning
from hybridpgm.torchscript import script_function
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["DATA_NOTE", "MODEL_NOTE", "assert_in_trace", "describe_check", "validation_as_called"]

#: the compiled assertions by error class, scripted on first use (not at import: importing hybridpgm compiles nothing)
_SCRIPTED: dict = {}
#: whether this process has warned that traced checks lose their details
_WARNED: list = []
#: Pyro's validation flag as :func:`validation_as_called` last read it outside a trace (``None``: never)
_EAGER_VALIDATION: contextvars.ContextVar[bool | None] = contextvars.ContextVar("hybridpgm_eager_validation",
                                                                                default=None)

#: the note after a data check's description: the batch is at fault, and the eager ELBO names the row and value
DATA_NOTE = ("a hybridpgm data check compiled by torch.jit.trace: the compiled function cannot name the row or the "
             "value; evaluate this batch with the eager ELBO (Trace_ELBO, TraceEnum_ELBO) or call the model on it "
             "for the full message")
#: the note after a check of the model's parameters or arguments (a non-finite potential): not the batch's fault
MODEL_NOTE = ("a hybridpgm check of the model, not of the batch, compiled by torch.jit.trace: the compiled function "
              "cannot name the values; call the model eagerly for the full message")


# One raiser per error class: TorchScript compiles the class of a raise statically, and the compiled function's
# error ends with that class's name.  Each returns ``ok`` (TorchScript records a call only of a function that
# returns a tensor).
def _raise_data(ok: torch.Tensor, message: str) -> torch.Tensor:
    if not bool(ok):
        raise DataError(message)
    return ok


def _raise_evidence(ok: torch.Tensor, message: str) -> torch.Tensor:
    if not bool(ok):
        raise EvidenceError(message)
    return ok


def _raise_model_spec(ok: torch.Tensor, message: str) -> torch.Tensor:
    if not bool(ok):
        raise ModelSpecError(message)
    return ok


def _raise_config(ok: torch.Tensor, message: str) -> torch.Tensor:
    if not bool(ok):
        raise ConfigError(message)
    return ok


def _raise_objective(ok: torch.Tensor, message: str) -> torch.Tensor:
    if not bool(ok):
        raise ObjectiveError(message)
    return ok


_RAISERS = {DataError: _raise_data, EvidenceError: _raise_evidence, ModelSpecError: _raise_model_spec,
            ConfigError: _raise_config, ObjectiveError: _raise_objective}


def _scripted(kind: type):
    """The scripted raiser of ``kind`` or of its nearest base among :data:`_RAISERS`."""
    base = next((k for k in getattr(kind, "__mro__", ()) if k in _RAISERS), None)
    if base is None:
        raise ConfigError(f"a check compiled by torch.jit.trace raises one of "
                          f"{sorted(k.__name__ for k in _RAISERS)} or a subclass, got kind={kind!r}")
    if base not in _SCRIPTED:
        _SCRIPTED[base] = script_function(_RAISERS[base])  # without torch's notice that TorchScript is deprecated
    return _SCRIPTED[base]


def describe_check(error) -> str:
    """A name for the check whose error builder is ``error`` (a function or lambda defined in the check),
    read from its qualified name: ``"VAE._check.<locals>.not_binary"`` gives ``"check 'not_binary' of
    VAE._check"``, a lambda ``"a check of BayesNetMasks._mask_column"``; a :func:`functools.partial` by its
    function."""
    error = getattr(error, "func", error)  # functools.partial(builder, ...)
    name = getattr(error, "__qualname__", None) or type(error).__name__
    owner, _, own = name.rpartition(".<locals>.")
    if not owner:
        return f"check {name!r}"
    return f"a check of {owner}" if own == "<lambda>" else f"check {own!r} of {owner}"


def assert_in_trace(ok: torch.Tensor, what: str, kind: type = DataError, note: str = DATA_NOTE) -> bool:
    """Inside :func:`torch.jit.trace`, record in the traced graph that the one-element bool tensor ``ok`` must be
    true: the compiled function raises :class:`torch.jit.Error` (its message ending with
    ``hybridpgm.errors.<kind>: <what> [<note>]``) on any later input for which it is false.  Warns once per
    process (:class:`~hybridpgm.errors.TrainingWarning`) that such checks carry no row or value.

    :param ok: the check's flag, a one-element bool tensor computed from the traced inputs.
    :param what: the check's fixed description (the data-dependent details of the eager error cannot be
        computed in the trace).
    :param kind: the class of the eager error (:class:`~hybridpgm.errors.DataError`,
        :class:`~hybridpgm.errors.EvidenceError`, :class:`~hybridpgm.errors.ModelSpecError`,
        :class:`~hybridpgm.errors.ConfigError`, :class:`~hybridpgm.errors.ObjectiveError` or a subclass, named as
        its base), which the message names.
    :param note: what the compiled failure adds in brackets: :data:`DATA_NOTE` (the batch is at fault),
        :data:`MODEL_NOTE` (the model's parameters are) or the caller's own.
    :returns: whether ``ok`` holds on the inputs being traced (the caller then raises its eager error, which
        can still read the data).
    :raises ConfigError: ``kind`` is none of those classes.
    """
    raiser = _scripted(kind)
    if not _WARNED:
        _WARNED.append(True)
        warnings.warn(
            "hybridpgm's data checks run inside torch.jit.trace (a Pyro JIT ELBO such as JitTrace_ELBO or "
            "JitTraceEnum_ELBO compiles the model so): each is compiled as an assertion that checks every later "
            "batch, but a failure raises torch.jit.Error with the check's fixed description only (the first: "
            f"{what}), without the row or value the eager error names; evaluate a refused batch with the "
            "eager ELBO (Trace_ELBO, TraceEnum_ELBO) or the model itself for the details", TrainingWarning,
            stacklevel=users_stacklevel(past_libraries=True))
    try:
        raiser(ok.reshape(()), f"{what} [{note}]")
    except torch.jit.Error:
        return False
    return True


def validation_as_called() -> bool:
    """Pyro's validation flag as the caller of the code being run set it, for a check that runs only under
    validation (eager code skips it without): outside :func:`torch.jit.trace` the flag itself, and inside one the
    flag as this function read it at its last call outside a trace, or the flag itself where that is on.

    Pyro's JIT ELBOs (``pyro.ops.jit.trace``) turn validation off while they trace; a check gated by the flag alone
    would be left out of every compiled function, and one that ran whenever tracing would be compiled in where the
    eager code skips it (a cost per step and an error the eager ELBO does not raise).  Before it traces, Pyro runs
    the same programs once eagerly, under the caller's flag, to capture their parameters: the flag read there is
    the one the compiled function keeps (as for Pyro's own checks, the flag when the function is compiled, not
    when it is replayed).

    :returns: whether the gated check runs (is compiled in)."""
    flag = is_validation_enabled()
    if not torch.jit.is_tracing():
        if _EAGER_VALIDATION.get() is not flag:
            _EAGER_VALIDATION.set(flag)
        return flag
    return flag or bool(_EAGER_VALIDATION.get())
