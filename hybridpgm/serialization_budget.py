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
import os
import weakref
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from hybridpgm.errors import CheckpointError
# the rules of the functions whose arguments say what they ask for (under the names they had here)
from hybridpgm.serialization_asked import ASKED as _ASKED, call_text as _call_text
from hybridpgm.train.atomic_write import os_reason
from hybridpgm.train.torch_load import MIN_REPEAT_BYTES, REPEAT_FACTOR, repeat_limit

__all__ = ["BuildBudget", "build_limit", "build_within", "constructed", "file_budget", "held_bytes"]

_T = TypeVar("_T")
#: the tensor types whose methods need no guard against a subclass's ``__torch_function__``
_PLAIN_TYPES = (torch.Tensor, nn.Parameter)
#: the budget of the build under way in this context (``None``: no build), for :func:`constructed`
_ACTIVE: ContextVar[BuildBudget | None] = ContextVar("hybridpgm_build_budget", default=None)


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
    """The rule of :data:`~hybridpgm.serialization_asked.ASKED` for ``func``, else :data:`_IN_PLACE` (a name ending
    in one ``_``) or :data:`_PLAIN`."""
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
