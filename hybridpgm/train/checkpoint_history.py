"""The run history inside a checkpoint: one tensor per series, so that a write costs O(1) Python work per series.

A :class:`~hybridpgm.train.history.History` keeps its series as Python lists (one float a step and player).  Written
as lists, every checkpoint walked each float in Python four times (:func:`~hybridpgm.train.checkpoint.plain_data`,
:func:`~hybridpgm.train.checkpoint.nonfinite_entries`, :func:`~hybridpgm.train.checkpoint.encode_nonfinite_floats`
and torch's pickler), so a run of :math:`S` steps checkpointed every :math:`k` steps spent
:math:`O(S^2 / k)` in its writes (74 s against 12 s of training at :math:`S = 32000`, :math:`k = 100`).  A
checkpoint of format 3 holds the history *packed* (:func:`packed_history`):

========================================  ========================================================
entry                                     value
========================================  ========================================================
``"encoding"``                            ``"tensors"`` (:data:`ENCODING`)
``"step"``                                ``int64``, shape :math:`(n,)`
``"loss"[player]``                        ``float64``, shape :math:`(n_p,)`
``"wall_time"``                           ``float64``, shape :math:`(n,)`
``"examples_per_second"``                 ``float64``, shape :math:`(n,)`
``"metrics"[name]``                       ``{"step": int64 (m,), "value": float64 (m,)}``
``"nonfinite"``                           the same places, for the float series holding a non-finite value
                                          only: ``int8`` codes of their length (:data:`CODES`)
========================================  ========================================================

A ``float64`` holds a Python float exactly, so the history read back (:func:`unpacked_history`, which
:func:`~hybridpgm.train.checkpoint.load_checkpoint` applies) is the one saved, bit for bit.  A non-finite value (the
NaN loss of a step skipped under ``skip_nonfinite``, an evaluation that gave ``inf``) is stored as ``0.0`` in its
series and its kind in the code tensor: the history accepts any float, as before, while the file still holds finite
numbers only, so the checkpoint's finiteness checks need no exception for the history.  A checkpoint of format 1
or 2 holds the history as lists (:meth:`~hybridpgm.train.history.History.state_dict`), which is read as it is.
"""

from __future__ import annotations

import array
import math
import operator
from typing import TYPE_CHECKING, Any

import torch

from hybridpgm.checks import type_name
from hybridpgm.errors import CheckpointError

if TYPE_CHECKING:
    from hybridpgm.train.history import History

__all__ = ["CODES", "ENCODING", "is_packed_history", "packed_history", "unpacked_history"]

#: the value of a packed history's ``"encoding"`` entry
ENCODING = "tensors"
#: the non-finite value each code of a ``"nonfinite"`` tensor stands for (0: the series' own, finite, value)
CODES = {1: math.nan, 2: math.inf, 3: -math.inf}
_FLOAT_SERIES = ("wall_time", "examples_per_second")


def _described(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return f"a {type_name(value)}"


def _unstorable(where: str, problem: str, path: str | None) -> CheckpointError:
    target = f"checkpoint {path!r}" if path is not None else "a checkpoint"
    return CheckpointError(f"history{where} cannot be stored in {target}: it must be a list of numbers, not "
                           f"{problem}; nothing is written and the previous checkpoint is kept")


#: the :mod:`array` type code of each series dtype: a list of Python numbers converts to it three to four times
#: faster than ``torch.tensor`` reads it, the same values bit for bit (a Python float is a C double)
_ARRAY_CODES = {torch.float64: "d", torch.int64: "q"}


def _tensor(values: Any, dtype: torch.dtype, where: str, path: str | None) -> torch.Tensor:
    """``values`` (a sequence of numbers) as a 1-d tensor of ``dtype``: a non-empty list of numbers through an
    :class:`array.array` (C's conversion of each, then one copy-free :func:`torch.frombuffer`), anything else
    (or a list that the array refuses: a non-number, an int too large, a float in an int series) by torch in one
    call, which also names what it refuses.  An int series (``step``) holding floats takes whole ones only: a
    fraction, an infinity or NaN is refused, not cut to an integer."""
    code = _ARRAY_CODES.get(dtype)
    if code is not None and type(values) is list and values:
        try:
            return torch.frombuffer(array.array(code, values), dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            pass  # torch's conversion below: the same values, or the error that names the problem
    if code == "q" and type(values) is list:  # a float among the steps: whole ones read exactly, others refused
        values = _whole_numbers(values, where, path)
        if values is not None:
            return torch.frombuffer(array.array(code, values), dtype=dtype)
    try:
        tensor = torch.tensor(values, dtype=dtype)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise _unstorable(where, f"{_described(values)} that torch refuses ({error})", path) from error
    if tensor.dim() != 1:
        raise _unstorable(where, f"{_described(values)} that torch reads as {_described(tensor)}", path)
    return tensor


def _whole_numbers(values: list, where: str, path: str | None) -> list[int] | None:
    """The step numbers ``values`` as Python ints, each float (or float-like: a NumPy float, a 0-d tensor) read
    exactly where it is whole (``2.0``; ``16777217.0`` too, which a float32 would round) and refused where it is
    not (``2.5``, an infinity, NaN, beyond int64); ``None`` where an entry is no number at all (torch's conversion
    then names it).  Python work per entry: the fallback of a list the array refused only."""
    out = []
    for value in values:
        try:
            out.append(operator.index(value))  # ints, bools, NumPy and 0-d tensor integers
            continue
        except TypeError:
            pass
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not (number.is_integer() and abs(number) < 2.0 ** 63):
            raise _unstorable(where, f"a list holding {value!r}, which is no whole step number", path)
        out.append(int(number))
    return out


def _float_series(values: Any, where: str, codes: dict[str, torch.Tensor], key: str,
                  path: str | None) -> torch.Tensor:
    """``values`` as a ``float64`` tensor with its non-finite entries set to 0, their codes put in ``codes[key]``."""
    tensor = _tensor(values, torch.float64, where, path)
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return tensor
    code = torch.zeros(tensor.shape, dtype=torch.int8)
    code[torch.isnan(tensor)] = 1
    code[tensor == math.inf] = 2
    code[tensor == -math.inf] = 3
    codes[key] = code
    return tensor.masked_fill(~finite, 0.0)


def packed_history(history: History, path: Any = None) -> dict[str, Any]:
    """``history`` in the checkpoint's packed form (see the module docstring): each series one tensor, converted
    from its list in one call (no Python work per value: :func:`_tensor`).

    :param path: the checkpoint file, named in the errors.
    :raises CheckpointError: a series holds something other than numbers (a callback wrote into the history), or
        the step series a number that is not whole, naming it.
    """
    path = None if path is None else str(path)
    nonfinite: dict[str, Any] = {}
    loss_codes: dict[str, torch.Tensor] = {}
    metric_codes: dict[str, torch.Tensor] = {}
    packed: dict[str, Any] = {"encoding": ENCODING, "step": _tensor(history.step, torch.int64, "['step']", path)}
    packed["loss"] = {player: _float_series(values, f"['loss'][{player!r}]", loss_codes, player, path)
                      for player, values in history.loss.items()}
    for key in _FLOAT_SERIES:
        packed[key] = _float_series(getattr(history, key), f"[{key!r}]", nonfinite, key, path)
    metrics = {}
    for name, points in history.metrics.items():
        where = f"['metrics'][{name!r}]"
        try:
            steps, values = zip(*points) if points else ((), ())
        except (TypeError, ValueError) as error:
            raise _unstorable(where, f"{_described(points)} of other than (step, value) pairs ({error})",
                              path) from error
        metrics[name] = {"step": _tensor(steps, torch.int64, where + "['step']", path),
                         "value": _float_series(values, where + "['value']", metric_codes, name, path)}
    packed["metrics"] = metrics
    if loss_codes:
        nonfinite["loss"] = loss_codes
    if metric_codes:
        nonfinite["metrics"] = {name: {"value": code} for name, code in metric_codes.items()}
    packed["nonfinite"] = nonfinite
    return packed


def is_packed_history(value: Any) -> bool:
    """Whether ``value`` is a history in the packed form of :func:`packed_history`."""
    return isinstance(value, dict) and value.get("encoding") == ENCODING


class _Reader:
    """Reads the series of one packed history, checking each (a damaged or hand-edited file names the entry)."""

    def __init__(self, packed: dict[str, Any], path: str | None) -> None:
        self.packed, self.path = packed, path
        self.nonfinite = packed.get("nonfinite", {})

    def fail(self, where: str, problem: str) -> CheckpointError:
        file = f"checkpoint {self.path!r}: " if self.path is not None else ""
        return CheckpointError(f"{file}the history entry{where} {problem}; hybridpgm never writes such a "
                               "checkpoint, so the file was changed or damaged: resume from an earlier copy, or "
                               "pass overwrite=True (CLI: --overwrite) to start afresh")

    def entry(self, container: Any, key: str, where: str) -> Any:
        if not isinstance(container, dict) or key not in container:
            raise self.fail(where, "is missing")
        return container[key]

    def tensor(self, value: Any, dtype: torch.dtype, where: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != 1:
            raise self.fail(where, f"is {_described(value)}, not a 1-d {str(dtype).removeprefix('torch.')} tensor")
        return value.cpu()

    def ints(self, value: Any, where: str) -> list[int]:
        return self.tensor(value, torch.int64, where).tolist()

    def floats(self, value: Any, where: str, code: Any) -> list[float]:
        """The series at ``where``, its non-finite entries put back from ``code`` (``None``: all finite)."""
        tensor = self.tensor(value, torch.float64, where)
        if code is None:
            return tensor.tolist()
        code = self.tensor(code, torch.int8, f"['nonfinite']{where}")
        if code.shape != tensor.shape or bool(((code < 0) | (code > len(CODES))).any()):
            raise self.fail(f"['nonfinite']{where}", f"is {_described(code)} of codes outside 0..{len(CODES)} or of "
                                                      f"another length than its series ({tensor.numel()})")
        tensor = tensor.clone()
        for number, value in CODES.items():
            tensor[code == number] = value
        return tensor.tolist()

    def code(self, *keys: str) -> Any:
        """The code tensor at ``keys`` under ``"nonfinite"``, or ``None`` (a series holding finite values only)."""
        node = self.nonfinite
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


def unpacked_history(packed: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    """The history of :func:`packed_history` in the list form of
    :meth:`~hybridpgm.train.history.History.state_dict` (the values saved, bit for bit).

    :param path: the checkpoint file, named in the errors.
    :raises CheckpointError: an entry is missing or not a 1-d tensor of its dtype (naming it and the file).
    """
    read = _Reader(packed, None if path is None else str(path))
    state: dict[str, Any] = {"step": read.ints(read.entry(packed, "step", "['step']"), "['step']")}
    losses = read.entry(packed, "loss", "['loss']")
    if not isinstance(losses, dict):
        raise read.fail("['loss']", f"is {_described(losses)}, not a dict")
    state["loss"] = {player: read.floats(values, f"['loss'][{player!r}]", read.code("loss", player))
                     for player, values in losses.items()}
    for key in _FLOAT_SERIES:
        state[key] = read.floats(read.entry(packed, key, f"[{key!r}]"), f"[{key!r}]", read.code(key))
    metrics = read.entry(packed, "metrics", "['metrics']")
    if not isinstance(metrics, dict):
        raise read.fail("['metrics']", f"is {_described(metrics)}, not a dict")
    state["metrics"] = {}
    for name, points in metrics.items():
        where = f"['metrics'][{name!r}]"
        steps = read.ints(read.entry(points, "step", where + "['step']"), where + "['step']")
        values = read.floats(read.entry(points, "value", where + "['value']"), where + "['value']",
                             read.code("metrics", name, "value"))
        if len(steps) != len(values):
            raise read.fail(where, f"holds {len(steps)} steps and {len(values)} values")
        state["metrics"][name] = [[step, value] for step, value in zip(steps, values)]
    return state
