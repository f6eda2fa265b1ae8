"""Discrete evidence as states, every node's checks read back to the host at once.

A BayesNet query checks the evidence of each discrete node -- whole states ``0..card-1``, ``-1``/``NaN`` for
"not observed in this row" -- and needs two flags per node on the host (observed in every row, in none), which
decide how :func:`~hybridpgm.infer.bn_evidence.parse_evidence` stores the node.  The checks split in two halves:
:func:`state_checks` builds a node's masks and its few flags on the evidence's device (no read);
:func:`read_flags` reads the flags of all nodes (and of any other check, such as a continuous node's ``NaN``)
in one ``tolist`` -- on CUDA one synchronisation per query, not one per node; :func:`judged_states` then
raises for a bad node, with the message naming it, or returns its states and flags.

Under :func:`torch.jit.trace` those host reads are frozen: a query traced on rows that all observe a node (or that
none observes) would answer a later call with other rows by the frozen choice, reading ``-1`` as a state or
dropping observed rows.  :func:`judged_states` therefore compiles the choice into the trace as a guard
(:func:`~hybridpgm.train.traced_checks.assert_in_trace`), with the range checks: the traced query raises
:class:`torch.jit.Error` (``hybridpgm.errors.ConfigError: ...``) on another evidence pattern, and
(``hybridpgm.errors.EvidenceError: ...``) on a value that is no state.  Rows of a mixed pattern take the general
path, which every pattern satisfies: a query traced on them serves every pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.train.traced_checks import DATA_NOTE, assert_in_trace
from hybridpgm.transform_scope import under_vmap

__all__ = ["judged_states", "read_flags", "state_checks"]


def _read(x: torch.Tensor) -> list:
    """``x.tolist()``: one host read.  Under :func:`torch.func.vmap` a batched ``x`` has no storage, and the
    ``RuntimeError`` of ``tolist`` does not name ``vmap``; that of ``item`` does, and the queries turn it into their
    :class:`~hybridpgm.errors.ConfigError` (:func:`~hybridpgm.transform_scope.vmap_reads_refused`)."""
    try:
        return x.tolist()
    except RuntimeError:
        if under_vmap():
            x.reshape(-1)[0].item()  # raises vmap's own error, naming it
        raise


def read_flags(flags: Sequence[Sequence[torch.Tensor]]) -> list[list]:
    """The values of ``flags`` -- per check, a list of 0-d tensors (``bool`` or integer) on one device -- in one
    host read: per check, the list of its values (Python ``int``; ``bool`` where every flag is ``bool``).

    :param flags: the flags of each check, in order.
    """
    flat = [f for group in flags for f in group]
    if not flat:
        return [[] for _ in flags]
    values = _read(torch.stack(flat))  # torch.stack promotes bool flags next to integer ones
    out, at = [], 0
    for group in flags:
        out.append(values[at:at + len(group)])
        at += len(group)
    return out


def _row_of(bad: torch.Tensor) -> str:
    """``"row i"`` of the first entry marked by ``bad`` (``[N]``), ``"a scalar"`` for a 0-d one (error path)."""
    return "a scalar" if bad.dim() == 0 else f"row {int(bad.nonzero()[0, 0])}"


def state_checks(t: torch.Tensor, card: int) -> tuple[tuple, list[torch.Tensor]]:
    """The device half of the checks of discrete evidence ``t`` (``[N]`` or 0-d, any real dtype) of a node of
    ``card`` states: ``(checks, flags)``, ``flags`` 0-d tensors for :func:`read_flags`, ``checks`` what
    :func:`judged_states` needs besides their values.  Reads nothing.

    A floating ``t`` gives four ``bool`` flags (some non-integer value, some value outside the states, some row
    missing, every row missing), an integer or ``bool`` one its minimum and maximum as ``long``.  Floats are
    checked before any cast to long, which would wrap an infinity or ``1e20`` to a negative ("missing") index.
    """
    if torch.is_floating_point(t):
        missing = torch.isnan(t) | (t == -1)
        fraction = ~missing & (t != t.round())  # an infinity is whole: out of range below
        bad = ~missing & ~fraction & ((t < 0) | (t >= card))
        return (t, missing, fraction, bad), [fraction.any(), bad.any(), missing.any(), missing.all()]
    dtype = t.dtype
    t = t.long()  # unsigned and bool hold no -1: their values are states (a uint8 255 is out of range below)
    return (t, dtype), list(torch.aminmax(t)) if t.numel() else [t.new_zeros(()), t.new_zeros(())]


def judged_states(name: str, card: int, checks: tuple, values: Sequence) -> tuple[torch.Tensor, bool, bool]:
    """``(states, observed in every row, observed in none)`` of node ``name`` from :func:`state_checks`'s
    ``checks`` and the values of its flags: the evidence as long states, ``-1`` where a row does not observe it.

    The convention MarkovNet's evidence follows too: a state is a whole number ``0..card-1``; ``-1`` (in a signed
    integer or a floating tensor) or ``NaN`` (floating) marks a row that does not observe the node (an unsigned
    integer or ``bool`` tensor has no such marker).  Any other value is refused, never read as "not observed": a
    non-integer, or a value outside ``0..card-1`` -- another negative number, an infinity (either sign).  Only the
    message reads the tensor again, for the first bad entry.

    :param name: the node, as messages name it.
    :param card: its number of states.
    :param checks: the first item :func:`state_checks` returned.
    :param values: the values of the flags it returned (:func:`read_flags`).
    :raises EvidenceError: naming the node, the first bad value and its row: a non-integer value (``0.5``,
        ``-1.5``), or a value outside ``0..card-1`` other than ``-1`` (``-2``, ``+inf``, ``-inf``; for an unsigned
        or ``bool`` dtype, saying it has no marker for "not observed").
    """
    if len(checks) == 4:
        t, missing, fraction, bad = checks
        if values[0]:
            raise EvidenceError(f"evidence for {name!r} holds non-integer values: {t[fraction][0].item()} in "
                                f"{_row_of(fraction)}; give whole states 0..{card - 1}, and -1 or NaN where a row "
                                f"does not observe {name!r}")
        if values[1]:
            raise EvidenceError(f"value {t[bad][0].item()} out of range for {name!r} (cardinality {card}) in "
                                f"{_row_of(bad)}; only -1 or NaN means not observed")
        everywhere, nowhere = not values[2], bool(values[3])
        if torch.jit.is_tracing():
            _traced_guards(name, card, ~(fraction | bad), missing, everywhere, nowhere)
        return torch.where(missing, -1.0, t).long(), everywhere, nowhere
    t, dtype = checks
    lo, hi = values
    if lo < -1 or hi >= card:
        marker = "only -1 means not observed" if dtype.is_signed else \
            f"dtype {dtype} has no marker for not observed (-1 needs a signed integer or a float tensor)"
        bad = (t < -1) | (t >= card)
        raise EvidenceError(f"value {t[bad][0].item()} out of range for {name!r} (cardinality {card}) in "
                            f"{_row_of(bad)}; {marker}")
    if torch.jit.is_tracing():
        _traced_guards(name, card, (t >= -1) & (t < card), t < 0, lo >= 0, hi < 0)
    return t, lo >= 0, hi < 0


def _pattern_note(name: str, traced: str) -> str:
    """The bracketed note of a compiled pattern guard: the rows are valid, the trace is out of date."""
    return (f"not a data error: this query was traced on rows where {traced}, and its trace answers only such rows; "
            f"trace it again on the rows to serve (rows where some but not all observe {name!r} trace a function "
            f"that answers every pattern) or call it eagerly; see docs/compile.md")


def _traced_guards(name: str, card: int, valid: torch.Tensor, missing: torch.Tensor, everywhere: bool,
                   nowhere: bool) -> None:
    """Under :func:`torch.jit.trace`, compile into the trace the checks :func:`judged_states` read on the host:
    every value of node ``name`` a state or a marker (``valid``), and the evidence pattern the trace was built for
    -- every row observes the node (``everywhere``: no entry of ``missing``), or none does (``nowhere``: every
    entry).  A mixed pattern is stored by the general path, which answers every pattern: no guard.

    :param valid: ``[N]`` or 0-d bool, the entries that are states ``0..card-1`` or the marker of a missing one.
    :param missing: same shape, the entries that mark "not observed".
    """
    assert_in_trace(valid.all(), f"evidence for {name!r} holds a value that is neither a state 0..{card - 1} nor "
                    "-1/NaN (not observed)", EvidenceError, DATA_NOTE)
    if everywhere:
        assert_in_trace(~missing.any(), f"evidence for {name!r} leaves some row unobserved", ConfigError,
                        _pattern_note(name, f"every row observes {name!r}"))
    elif nowhere:
        assert_in_trace(missing.all(), f"evidence for {name!r} observes some row", ConfigError,
                        _pattern_note(name, f"no row observes {name!r}"))
