"""Results that move between devices and turn into plain data: ``result.to(...)``, ``result.cpu()``,
``result.to_dict()``.

An inference result computed on a GPU (:class:`~hybridpgm.infer.AISResult`,
:class:`~hybridpgm.infer.BPResult`, :class:`~hybridpgm.gp.GPPrediction`, ...) holds tensors on that GPU: to plot
it, pickle it for a CPU-only machine or write it as JSON, each field had to be moved by hand.
:class:`PortableResult` gives every result the same three methods:

* :meth:`~PortableResult.to` ``(*args, **kwargs)`` takes what :meth:`torch.nn.Module.to` takes (a device, a
  floating dtype, both, a tensor whose device and dtype to copy, ``non_blocking``, ``memory_format``) and returns
  a **new** result of the same class whose tensors are moved, the original untouched.  As for a module, a dtype
  casts the floating-point tensors only: integer and bool tensors (an assignment, indices) keep their dtype and
  are only moved, since ``res.to(torch.float64)`` is asked of the numbers, not of the indices.  Tensors inside
  ``dict``, ``list`` and ``tuple`` fields and nested results (the :class:`~hybridpgm.infer.AISResult` of each
  start of a :class:`~hybridpgm.infer.log_z.LogZEstimate`) are moved too, in new containers; every other value
  (numbers, strings, NumPy arrays, which are host data already) is shared with the original.
  ``tensor.to`` keeps the autograd graph, so a moved tensor that required gradients still does.
* :meth:`~PortableResult.cpu` is ``to("cpu")``.
* :meth:`~PortableResult.to_dict` gives plain Python for JSON: a tensor or array becomes its ``tolist()``
  (a number for a scalar, nested lists otherwise), a nested result its own ``to_dict()``, a ``torch.device``
  or ``dtype`` its name, containers plain ``dict``/``list``; other values are kept.  ``json.dumps`` accepts
  the answer (NaN and infinite values come out as ``NaN``/``Infinity``, as ``json.dumps`` writes them by
  default).  A result may define its own report instead (:meth:`LogZEstimate.to_dict
  <hybridpgm.infer.log_z.LogZEstimate.to_dict>` and :meth:`LikelihoodBounds.to_dict
  <hybridpgm.infer.raise_ais.LikelihoodBounds.to_dict>` give summary numbers, not every chain's weight).

**Which fields.**  A dataclass result's fields are its :func:`dataclasses.fields` (``init=False`` fields
included); a :class:`~typing.NamedTuple` result's its ``_fields``; any other result names them itself with
``_result_fields()`` (a dict, name to value) and builds its copy with ``_with_result_fields(values)``
(:class:`~hybridpgm.infer.BPResult`, whose lazy parts are computed before a move).  The copy of a dataclass is
``copy.copy`` with the moved fields set (:func:`dataclasses.replace` would re-run ``__init__``, which refuses
``init=False`` fields and resets them to their defaults).  A :class:`~typing.NamedTuple` cannot take a base
class (Python allows only ``Generic`` beside it), so it takes the three methods as class attributes
(``to = PortableResult.to``, ...) and ``_replace`` builds its copy.

>>> res = AIS(num_chains=100)(rbm.cuda())   # doctest: +SKIP
>>> res.cpu().log_weights.device            # doctest: +SKIP
device(type='cpu')
>>> json.dumps(res.to_dict())               # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.device import resolve_device

__all__ = ["PortableResult", "moved", "plain"]


class _Move(NamedTuple):
    """A parsed ``to(...)`` request: what :meth:`torch.nn.Module.to` parses."""

    device: torch.device | None
    dtype: torch.dtype | None
    non_blocking: bool
    memory_format: torch.memory_format | None

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` moved; the dtype applies to floating-point tensors only (as :meth:`torch.nn.Module.to`)."""
        dtype = self.dtype if t.is_floating_point() else None
        if self.memory_format is not None and t.dim() in (4, 5):
            return t.to(self.device, dtype, self.non_blocking, memory_format=self.memory_format)
        return t.to(self.device, dtype, self.non_blocking)


def _parse(owner: str, args: tuple, kwargs: dict) -> _Move:
    """The arguments of ``owner.to(*args, **kwargs)``, checked.

    :raises ConfigError: arguments :meth:`torch.Tensor.to` does not take (a malformed device name), a number that
        is not an integer GPU index (torch would read ``1.5`` as a float64 tensor to match), or a dtype that is not
        floating point, naming them.
    :raises DeviceError: a CUDA device (or an integer index, which means ``cuda:N``) on a machine without it, or
        a GPU index that does not exist (:func:`~hybridpgm.train.device.resolve_device`).
    """
    for value in (*args[:1], kwargs.get("device")):  # the device's place (after it: a dtype, non_blocking, ...)
        if isinstance(value, int) and not isinstance(value, bool):  # a GPU index, as Tensor.to reads it
            resolve_device(f"cuda:{value}")
        elif isinstance(value, (bool, float, complex)):  # torch would read a number as a tensor to match
            raise ConfigError(f"{owner}.to: {value!r} is neither a device nor a dtype")
    try:
        device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
    except (RuntimeError, TypeError, ValueError) as error:
        given = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
        raise ConfigError(f"{owner}.to({given}): give a device ('cpu', 'cuda', 'cuda:N', a torch.device), a "
                          f"floating dtype, both, or a tensor to match ({error})") from error
    if dtype is not None and not dtype.is_floating_point:
        raise ConfigError(f"{owner}.to: a result casts its floating-point tensors only (integer and bool tensors "
                          f"keep their dtype), so the dtype must be floating point, got {dtype}")
    if device is not None and device.type == "cuda":
        resolve_device(device)
    return _Move(device, dtype, bool(non_blocking), memory_format)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _is_result(value: Any) -> bool:
    """A :class:`PortableResult`, or a NamedTuple that took its methods."""
    return isinstance(value, PortableResult) or (_is_namedtuple(value) and
                                                 getattr(type(value), "to", None) is PortableResult.to)


def _fields_of(result: Any) -> dict[str, Any]:
    """Field name -> value of a result (see the module docstring)."""
    own = getattr(result, "_result_fields", None)
    if own is not None:
        return own()
    if _is_namedtuple(result):
        return result._asdict()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    raise ConfigError(f"{type(result).__name__} is neither a dataclass nor a NamedTuple and defines no "
                      f"_result_fields(): PortableResult cannot tell its fields")


def _with_fields(result: Any, values: dict[str, Any]) -> Any:
    """A copy of ``result`` with the fields ``values`` (the others shared)."""
    own = getattr(result, "_with_result_fields", None)
    if own is not None:
        return own(values)
    if _is_namedtuple(result):
        return result._replace(**values)
    new = copy.copy(result)
    for name, value in values.items():
        object.__setattr__(new, name, value)  # a frozen dataclass too
    return new


def _moved(value: Any, move: _Move) -> Any:
    if isinstance(value, torch.Tensor):
        return move.tensor(value)
    if _is_result(value):
        return _with_fields(value, {k: _moved(v, move) for k, v in _fields_of(value).items()})
    if isinstance(value, dict):
        return {k: _moved(v, move) for k, v in value.items()}
    if _is_namedtuple(value):
        return type(value)(*(_moved(v, move) for v in value))
    if isinstance(value, tuple):
        return tuple(_moved(v, move) for v in value)
    if isinstance(value, list):
        return [_moved(v, move) for v in value]
    return value


def moved(result: Any, *args: Any, **kwargs: Any) -> Any:
    """A new ``result`` whose tensors are moved as ``tensor.to(*args, **kwargs)`` moves them, a dtype casting the
    floating-point ones only (the module docstring); :meth:`PortableResult.to` calls it.

    :raises ConfigError: arguments ``Tensor.to`` does not take, or a dtype that is not floating point.
    :raises DeviceError: a CUDA device this machine does not have.
    """
    move = _parse(type(result).__name__, args, kwargs)
    return _with_fields(result, {k: _moved(v, move) for k, v in _fields_of(result).items()})


def plain(value: Any) -> Any:
    """``value`` as plain Python for JSON (the module docstring): tensors and arrays as ``tolist()``, results
    as their ``to_dict()``, devices and dtypes as names, containers as ``dict``/``list``."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value)
    if _is_result(value):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if _is_namedtuple(value):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class PortableResult:
    """Mixin of the results: :meth:`to`, :meth:`cpu` and :meth:`to_dict` (the module docstring).  It adds no
    state and no ``__eq__`` (a result holding tensors compares by identity)."""

    __slots__ = ()

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """A new result of this class with its tensors moved as :meth:`torch.nn.Module.to` moves parameters: a
        device moves every tensor, a dtype casts the floating-point ones (integer and bool ones keep theirs);
        nested results and the tensors inside ``dict``/``list``/``tuple`` fields too.  Other fields are shared;
        ``self`` is not changed.

        :param args: as :meth:`torch.Tensor.to`: ``device``, ``dtype``, ``(device, dtype)`` or a tensor.
        :param kwargs: ``device``, ``dtype``, ``non_blocking``, ``memory_format``.
        :raises ConfigError: arguments ``Tensor.to`` does not take, or a dtype that is not floating point.
        :raises DeviceError: a CUDA device this machine does not have.
        """
        return moved(self, *args, **kwargs)

    def cpu(self) -> Any:
        """``self.to("cpu")``: a new result with every tensor on the CPU."""
        return moved(self, "cpu")

    def to_dict(self) -> dict[str, Any]:
        """Field name -> plain Python (tensors and arrays as numbers or nested lists), for ``json.dumps``."""
        return {name: plain(value) for name, value in _fields_of(self).items()}
