"""The bytes a torch function asks for, read from its arguments before it runs: the rules of
:class:`~hybridpgm.serialization_budget.BuildBudget`.

:data:`ASKED` maps each factory (``torch.empty``, ``zeros``, ``full``, ``randint``, ``arange``, ``eye``, the
``*_like`` functions, ``Tensor.new_empty``, ``resize_``, ...) and each operation whose arguments give its output's
size (``Tensor.repeat``, ``tile``, ``repeat_interleave``, ``clone``, ``contiguous``) to a rule
``rule(args, kwargs)`` giving :math:`\\mathrm{numel} \\times` the element size of what it asks for, or ``None``
where the arguments do not say (the result is then counted when it returns).  :func:`call_text` writes the call
for messages.

>>> ASKED[torch.zeros]((2, 3), {"dtype": torch.float64})
48
>>> call_text(torch.zeros, (2, 3), {"dtype": torch.float64})
'torch.zeros(2, 3, dtype=torch.float64)'
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import torch

__all__ = ["ASKED", "call_text", "function_name"]

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
ASKED: dict[Callable, Callable[[tuple, dict], int | None]] = {
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


def call_text(func: Callable, args: tuple, kwargs: dict) -> str:
    """The call ``func(*args, **kwargs)`` as a message shows it: a tensor by its shape and dtype, another value by
    the first 60 characters of its ``repr``."""
    shown = [f"a tensor of shape {tuple(v.shape)} ({v.dtype})" if isinstance(v, torch.Tensor) else repr(v)[:60]
             for v in (*args, *kwargs.values())]
    listed = shown[:len(args)] + [f"{k}={v}" for k, v in zip(kwargs, shown[len(args):])]
    return f"{function_name(func)}({', '.join(listed)})"


def function_name(func: Callable) -> str:
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
