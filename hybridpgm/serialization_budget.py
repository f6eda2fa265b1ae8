"""What building a model from a file may allocate: the bound :func:`hybridpgm.load` puts on the constructors it runs.

A model file names a class and the sizes its constructor is called with, so a file of 1.5 KB can ask for
``RBM(12000, 12000)``: hundreds of megabytes allocated, and filled by the random initialisation, before the weights
are compared with the module.  While :func:`~hybridpgm.serialization.load` runs the constructors a file names
(:func:`constructed`, nested ones included), a :class:`BuildBudget`, a :class:`torch.overrides.TorchFunctionMode`,
sees each torch function they call and counts the bytes of the tensors they made that are still alive, once per
storage (a storage freed, a temporary, gives its bytes back: a weak reference to it says when), against one bound
for the whole file (:func:`build_limit`: 64 MiB, or 16 times the file's size if more, plus the bytes of the tensors
it holds, which a genuine file's constructors make again as its weights):

* a factory given the size it makes (``torch.empty``, ``zeros``, ``ones``, ``full``, ``rand``, ``randn``,
  ``randint``, ``randperm``, ``normal``, ``eye``, ``arange``, ``linspace``, ``logspace``, ``empty_strided``,
  ``tril_indices``, ``triu_indices``, the ``*_like`` functions, ``Tensor.new_empty``, ``new_zeros``,
  ``new_ones``, ``new_full``, ``new_empty_strided``, ``resize_``) and an operation whose arguments say its
  output's size (``Tensor.repeat``, ``tile``, ``repeat_interleave``, ``clone``, ``contiguous``) is charged
  ``numel * element size`` of what it asks for *before* it runs, and refused there if the total would pass the
  bound: nothing is allocated (as ``nn.Linear``, ``nn.Conv2d``, ``nn.LSTM``, ``nn.Embedding`` and hybridpgm's
  own modules make their weights);
* a tensor that an in-place function (``uniform_``, ``nn.init.normal_``) writes and the budget has not seen (made by
  the legacy constructor ``torch.Tensor(n, m)``, which no mode sees) is charged before the function runs, before
  its pages are written and become resident;
* the result of any other function whose storage is new (``torch.tensor`` of a list, a product, a forward pass
  a constructor runs) is charged when it returns, so one such result may pass the bound before the build stops.

The tensors the file holds are known from the start and never charged; the moves to the device and dtypes saved
that follow each constructor are not counted (they copy what the constructors made, at most 8 times its bytes:
float16 to complex128).  A refusal is also kept by the budget (:attr:`BuildBudget.refusal`), so that a constructor
that catches the exception and raises another, or goes on, still ends the load with it (:func:`build_within`).  No
``torch._dynamo`` is involved (a dispatch mode, or torch's meta kernels, would import it: seconds on the first load
of a process).
"""

from __future__ import annotations

import functools
import math
import operator
import os
import weakref
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hybridpgm.errors import CheckpointError
from hybridpgm.train.atomic_write import os_reason
from hybridpgm.train.torch_load import MIN_REPEAT_BYTES, REPEAT_FACTOR, repeat_limit

__all__ = ["BuildBudget", "build_limit", "build_within", "constructed", "file_budget", "held_bytes"]

_T = TypeVar("_T")
#: the tensor types whose methods need no guard against a subclass's ``__torch_function__``
_PLAIN_TYPES = (torch.Tensor, nn.Parameter)
#: the budget of the build under way in this context (``None``: no build), for :func:`constructed`
_ACTIVE: ContextVar[BuildBudget | None] = ContextVar("hybridpgm_build_budget", default=None)
_SEQUENCES = (tuple, list, torch.Size)


def _numel(sizes: Any) -> int:
    """The elements of a tensor of ``sizes``: ints, one sequence of them (``(2, 3)``, ``((2, 3),)``) or one int.

    :raises TypeError: ``sizes`` are not that (the rule gives up; the result is counted when it returns)."""
    if not isinstance(sizes, _SEQUENCES):
        sizes = (sizes,)
    elif len(sizes) == 1 and isinstance(sizes[0], _SEQUENCES):
        sizes = sizes[0]
    numel = 1
    for size in sizes:
        numel *= max(operator.index(size), 0)  # a negative size: torch refuses it
    return numel


def _itemsize(kwargs: dict, dtype: torch.dtype | None = None) -> int:
    """The bytes of an element of the ``dtype`` given in ``kwargs``, else of ``dtype``, else of the default."""
    return (kwargs.get("dtype") or dtype or torch.get_default_dtype()).itemsize


def _fill_dtype(value: Any) -> torch.dtype:
    """The dtype ``torch.full`` infers from its fill value."""
    if isinstance(value, torch.Tensor):
        return value.dtype
    complex_dtype = torch.complex128 if torch.get_default_dtype() == torch.float64 else torch.complex64
    return {bool: torch.bool, int: torch.int64, complex: complex_dtype}.get(type(value), torch.get_default_dtype())


def _sized(a: tuple, k: dict) -> int:  # torch.empty(2, 3), zeros((2, 3)), ones(size=...), rand, randn
    return _numel(k["size"] if "size" in k else a) * _itemsize(k)


def _full(a: tuple, k: dict) -> int:
    return _numel(k["size"] if "size" in k else a[0]) * _itemsize(k, _fill_dtype(a[1] if len(a) > 1 else
                                                                                k.get("fill_value")))


def _randint(a: tuple, k: dict) -> int:  # randint(high, size), randint(low, high, size)
    return _numel(k["size"] if "size" in k else a[-1]) * _itemsize(k, torch.int64)


def _normal(a: tuple, k: dict) -> int | None:  # normal(mean, std, size) of floats; of tensors: counted after
    return _numel(k["size"] if "size" in k else a[2]) * _itemsize(k) if len(a) > 2 or "size" in k else None


def _eye(a: tuple, k: dict) -> int:
    n = a[0] if a else k["n"]
    m = a[1] if len(a) > 1 and not isinstance(a[1], torch.Tensor) else k.get("m", n)
    return _numel((n, m)) * _itemsize(k)


def _arange(a: tuple, k: dict) -> int | None:
    bounds = list(a[:3]) + [k[name] for name in ("start", "end", "step")[len(a):] if name in k]
    numbers = [b.item() if isinstance(b, torch.Tensor) else b for b in bounds]
    if not numbers or not all(isinstance(b, (int, float)) for b in numbers):
        return None
    start, end, step = (0, numbers[0], 1) if len(numbers) == 1 else (*numbers[:2], (numbers + [1])[2])
    if step == 0 or not all(math.isfinite(b) for b in (start, end, step)):
        return 0  # torch refuses it
    integral = all(isinstance(b, int) for b in numbers)
    return max(math.ceil((end - start) / step), 0) * _itemsize(k, torch.int64 if integral else None)


def _spaced(a: tuple, k: dict) -> int:  # linspace(start, end, steps), logspace
    return _numel(a[2] if len(a) > 2 else k["steps"]) * _itemsize(k)


def _span(sizes: Any, strides: Any) -> int:
    """The elements a storage holds for a tensor of ``sizes`` and ``strides``."""
    sizes, strides = [operator.index(n) for n in sizes], [operator.index(s) for s in strides]
    return 0 if any(n <= 0 for n in sizes) else 1 + sum((n - 1) * abs(s) for n, s in zip(sizes, strides))


def _like(a: tuple, k: dict) -> int:  # zeros_like(x), full_like(x, v), ...
    source = a[0] if a else k["input"]
    return source.numel() * _itemsize(k, source.dtype)


def _repeat(a: tuple, k: dict) -> int:  # x.repeat(2, 3), x.tile((2, 3)), torch.tile(x, (2, 3))
    source = a[0]
    return source.numel() * _numel(k.get("dims", k.get("repeats", a[1:]))) * source.element_size()


def _repeat_interleave(a: tuple, k: dict) -> int:
    source = a[0] if a else k["input"]
    repeats = a[1] if len(a) > 1 else k.get("repeats")
    if repeats is None:  # repeat_interleave(repeats): each index its count of times
        return int(source.sum()) * 8 if source.numel() else 0
    most = (int(repeats.max()) if repeats.numel() else 0) if isinstance(repeats, torch.Tensor) else repeats
    return source.numel() * max(operator.index(most), 0) * source.element_size()  # at most this many


def _copy(a: tuple, k: dict) -> int:  # clone: as many elements as the source, a view repeating them too
    source = a[0] if a else k["input"]
    return source.numel() * source.element_size()


#: torch function -> the bytes it asks for, from its arguments (``None``: unknown, counted when it returns)
_ASKED: dict[Callable, Callable[[tuple, dict], int | None]] = {
    **dict.fromkeys((torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn), _sized),
    torch.full: _full, torch.randint: _randint, torch.normal: _normal, torch.eye: _eye,
    torch.randperm: lambda a, k: _numel(a[0] if a else k["n"]) * _itemsize(k, torch.int64),
    torch.arange: _arange, torch.linspace: _spaced, torch.logspace: _spaced,
    torch.empty_strided: lambda a, k: _span(a[0], a[1]) * _itemsize(k),
    **dict.fromkeys((torch.tril_indices, torch.triu_indices),  # at most 2 * row * col indices
                    lambda a, k: 2 * _numel((a[0], a[1])) * _itemsize(k, torch.int64)),
    **dict.fromkeys((torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like, torch.rand_like,
                     torch.randn_like, torch.randint_like), _like),
    **dict.fromkeys((torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones),  # x.new_empty(2, 3)
                    lambda a, k: _numel(k["size"] if "size" in k else a[1:]) * _itemsize(k, a[0].dtype)),
    torch.Tensor.new_full: lambda a, k: _numel(k["size"] if "size" in k else a[1]) * _itemsize(k, a[0].dtype),
    torch.Tensor.new_empty_strided: lambda a, k: _span(a[1], a[2]) * _itemsize(k, a[0].dtype),
    torch.Tensor.resize_: lambda a, k: _numel(a[1:]) * a[0].element_size(),
    **dict.fromkeys((torch.Tensor.repeat, torch.Tensor.tile, torch.tile), _repeat),
    **dict.fromkeys((torch.repeat_interleave, torch.Tensor.repeat_interleave), _repeat_interleave),
    **dict.fromkeys((torch.clone, torch.Tensor.clone), _copy),
    torch.Tensor.contiguous: lambda a, k: 0 if a[0].is_contiguous() else _copy(a, k),
}


def _tensors(value: Any, depth: int = 2) -> Iterator[torch.Tensor]:
    """The tensors in ``value`` and in its lists and tuples, down to ``depth`` levels (an LSTM's ``(out, (h, c))``)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth and isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item, depth - 1)


def _storage(tensor: torch.Tensor) -> torch.UntypedStorage | None:
    """``tensor``'s storage, if it holds memory (not a meta, empty or sparse tensor, nor a lazy module's parameter).
    torch keeps one Python object per storage while the storage lives, so a weak reference to it says when its
    memory is freed."""
    try:
        if type(tensor) in _PLAIN_TYPES:
            storage = tensor.untyped_storage() if tensor.layout == torch.strided else None
        else:  # a subclass's __torch_function__ is left out (a lazy module's parameter refuses untyped_storage)
            with torch._C.DisableTorchFunctionSubclass():
                storage = tensor.untyped_storage() if tensor.layout == torch.strided else None
    except (RuntimeError, NotImplementedError):  # a tensor without storage of its own
        return None
    return storage if storage is not None and storage.data_ptr() else None


def _call_text(func: Callable, args: tuple, kwargs: dict) -> str:
    shown = [f"a tensor of shape {tuple(v.shape)} ({v.dtype})" if isinstance(v, torch.Tensor) else repr(v)[:60]
             for v in (*args, *kwargs.values())]
    listed = shown[:len(args)] + [f"{k}={v}" for k, v in zip(kwargs, shown[len(args):])]
    return f"{_function_name(func)}({', '.join(listed)})"


def _function_name(func: Callable) -> str:
    """``torch.randn``, ``Tensor.repeat``, ``torch.nn.init.kaiming_uniform_``: ``func`` as a caller writes it."""
    name = getattr(func, "__name__", None)
    if name is None:
        return repr(func)
    if getattr(torch, name, None) is func:
        return f"torch.{name}"
    if getattr(torch.Tensor, name, None) is func:
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name


def held_bytes(held: Iterable[torch.Tensor]) -> int:
    """The bytes of the distinct storages of the tensors ``held`` (a tensor shared by two entries counts once)."""
    storages = {storage.data_ptr(): storage.nbytes() for storage in map(_storage, held) if storage is not None}
    return sum(storages.values())


def build_limit(file_size: int, held: int) -> int:
    """The bytes that building the model of a file of :math:`s` = ``file_size`` bytes holding :math:`h` = ``held``
    bytes of tensors (:func:`held_bytes`) may allocate: :math:`\\max(64\\,\\mathrm{MiB}, 16 s) + h`, the bound
    on the views repeating elements of the file (:func:`~hybridpgm.train.torch_load.repeat_limit`) plus what it
    holds (a model file holds its weights, which its constructor makes again)."""
    return repeat_limit(file_size) + held


def file_budget(path: Path, payload: dict, max_build_bytes: int | None) -> BuildBudget:
    """The :class:`BuildBudget` of building the model of the file ``path``, whose contents ``payload`` are read
    (its ``tensors`` and ``state_dict`` are held): :func:`build_limit`, or ``max_build_bytes`` if given.

    :raises CheckpointError: the file's size cannot be read (naming the file and the OS reason).
    """
    held = [value for entry in ("tensors", "state_dict") for value in payload[entry].values()
            if isinstance(value, torch.Tensor)]
    if max_build_bytes is not None:
        return BuildBudget(max_build_bytes, held, f"max_build_bytes={max_build_bytes}")
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise CheckpointError(f"cannot read model file {str(path)!r}: {os_reason(error)}") from error
    nbytes = held_bytes(held)
    return BuildBudget(build_limit(size, nbytes), held, f"max({MIN_REPEAT_BYTES >> 20} MiB, {REPEAT_FACTOR} times "
                                                        f"the file's {size} bytes) plus the {nbytes} bytes of "
                                                        "tensors it holds")


#: what :meth:`BuildBudget.__torch_function__` does with a function that is no factory: nothing, or charge its
#: first argument if unseen (an in-place function, ``uniform_``, ``nn.init.kaiming_uniform_``: it writes there)
_PLAIN, _IN_PLACE = "plain", "in place"


def _kind(func: Callable) -> Any:
    """The rule of :data:`_ASKED` for ``func``, else :data:`_IN_PLACE` (a name ending in one ``_``) or
    :data:`_PLAIN`."""
    rule = _ASKED.get(func)
    if rule is not None:
        return rule
    name = getattr(func, "__name__", "")
    return _IN_PLACE if name.endswith("_") and not name.endswith("__") else _PLAIN


class BuildBudget(TorchFunctionMode):
    """A :class:`torch.overrides.TorchFunctionMode` that counts the bytes of the tensors made while it is on and
    still alive, once per storage, and refuses an allocation that takes them past ``limit`` (see the module's text).
    :func:`build_within` makes it the budget of a build, :func:`constructed` turns it on while a constructor runs.

    :param limit: the most bytes to allocate in all (:func:`build_limit`).
    :param held: tensors that exist already and are not charged (the file's).
    :param bound: how ``limit`` was set, as a refusal says it.
    """

    def __init__(self, limit: int, held: Iterable[torch.Tensor] = (), bound: str = "") -> None:
        super().__init__()
        #: the most bytes to allocate in all
        self.limit = limit
        #: how :attr:`limit` was set, as a refusal says it
        self.bound = bound or f"a limit of {limit} bytes"
        #: the bytes of the storages charged and alive
        self.used = 0
        #: why an allocation was refused (``None``: none was): the class being built, the call, its bytes
        self.refusal: str | None = None
        #: the address of each storage seen -> a weak reference to it whose callback gives its bytes back when it
        #: is freed (``None`` for the tensors held, never charged); cleared when the build ends (:func:`build_within`)
        self._known: dict[int, weakref.ref | None] = {s.data_ptr(): None for s in map(_storage, held) if s is not None}
        self._classes: list[str] = []
        self._kinds: dict[Callable, Any] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        kind = self._kinds.get(func)
        if kind is None:
            kind = self._kinds[func] = _kind(func)
        asked = target = None
        if kind is _IN_PLACE:  # the tensor written: x of x.uniform_(), of nn.init.normal_(tensor=x) (by keyword)
            target = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            if isinstance(target, torch.Tensor):
                self._see(target, lambda: f"written by {_call_text(func, args, kwargs)}")
        elif kind is not _PLAIN:
            try:
                asked = kind(args, kwargs)
            except Exception:  # noqa: BLE001 - arguments the rule does not read: counted when it returns
                asked = None
            if asked is not None:
                self._charge(asked, lambda: _call_text(func, args, kwargs))
        try:
            result = func(*args, **kwargs)
        finally:
            self.used -= asked or 0  # what it asked for; what it made is charged below
        if isinstance(result, torch.Tensor):
            if result is not target and not (args and result is args[0]):  # x.to(x.dtype), in place: x itself
                self._see(result, lambda: f"made by {_call_text(func, args, kwargs)}")
        elif isinstance(result, (tuple, list)) and not isinstance(result, torch.Size):
            for tensor in _tensors(result):
                self._see(tensor, lambda: f"made by {_call_text(func, args, kwargs)}")
        return result

    def _see(self, tensor: torch.Tensor, how: Callable[[], str]) -> None:
        """Charge the bytes of ``tensor``'s storage if it is new (``how``: how it came), until it is freed."""
        storage = _storage(tensor)
        if storage is None or storage.data_ptr() in self._known:
            return
        address, nbytes = storage.data_ptr(), storage.nbytes()
        self._charge(nbytes, lambda: f"a tensor of shape {tuple(tensor.shape)} ({tensor.dtype}) {how()}")
        self._known[address] = weakref.ref(storage, functools.partial(self._freed, address, nbytes))

    def _freed(self, address: int, nbytes: int, _: weakref.ref) -> None:
        """A storage charged was freed: its bytes come back, and its address may hold a new one."""
        self.used -= nbytes
        self._known.pop(address, None)

    def _charge(self, nbytes: int, call: Callable[[], str]) -> None:
        if self.used + nbytes > self.limit:
            where = f"building {self._classes[-1]}" if self._classes else "building the model"
            self.refusal = (f"{where} asks for {nbytes} bytes more ({call()}) with {self.used} bytes allocated, "
                            f"more than the {self.limit} bytes that building the model of this file may allocate")
            raise CheckpointError(self.refusal)
        self.used += nbytes


def constructed(class_name: str, factory: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    """``factory(*args, **kwargs)``, the constructor of ``class_name``, with the budget of the build under way
    (:func:`build_within`; none: as it is) on, naming that class in a refusal (positional-only: a constructor
    argument may be called ``factory``)."""
    budget = _ACTIVE.get()
    if budget is None:
        return factory(*args, **kwargs)
    budget._classes.append(class_name)
    try:
        if len(budget._classes) > 1:  # on already (a constructor that builds through hybridpgm.serialization)
            return factory(*args, **kwargs)
        with budget:
            return factory(*args, **kwargs)
    finally:
        budget._classes.pop()


def build_within(budget: BuildBudget, build: Callable[[], _T], path: Any) -> _T:
    """``build()`` with ``budget`` the budget of its constructors (:func:`constructed`); a refusal ends it with a
    :class:`CheckpointError` naming the file ``path``, whatever the constructor that met it raised or did next.

    :raises CheckpointError: the budget refused an allocation (``from`` what ``build`` raised, if anything), or
        torch's function handling is disabled (``torch._C.DisableTorchFunction``: the budget would be off).
    """
    if torch._C._is_torch_function_all_disabled():  # not DisableTorchFunctionSubclass: modes run there
        raise CheckpointError(f"refusing to load model file {str(path)!r} with torch's function handling disabled "
                              "(inside torch._C.DisableTorchFunction): the bound on what the constructors it names "
                              "may allocate needs it; load the file outside that context")
    token = _ACTIVE.set(budget)
    try:
        result = build()
    except Exception as error:
        if budget.refusal is not None:
            raise CheckpointError(_refused(budget, path)) from error
        raise
    finally:
        _ACTIVE.reset(token)
        budget._known.clear()  # its weak references: no callback once the build is over
    if budget.refusal is not None:  # a constructor caught the refusal and went on
        raise CheckpointError(_refused(budget, path))
    return result


def _refused(budget: BuildBudget, path: Any) -> str:
    return (f"refusing to load model file {str(path)!r}: {budget.refusal} ({budget.bound}); its sizes stand for far "
            "more memory than it holds (a changed or crafted file?); pass a larger max_build_bytes to hybridpgm.load "
            "if the file is trusted")
