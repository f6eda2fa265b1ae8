"""Pieces of the summary ``repr`` of results that hold arrays: what a notebook shows for a cell's last line.

A result's default dataclass ``repr`` prints every value of its tensors and arrays (36 KB for a
:class:`~hybridpgm.diagnostics.VICheck` of 1000 points); the summary ``repr`` of a result names each array by
its shape and dtype (:func:`array_text`, as :class:`~hybridpgm.infer.BPResult`'s does) and its key scalars by
their value (:func:`number_text`), so its length does not grow with the data.  Neither raises: a result built
by hand may hold anything, and its ``repr`` must still show.
"""

from __future__ import annotations

import reprlib
from typing import Any, Sequence

import torch

__all__ = ["array_text", "listed", "model_guide_text", "module_text", "number_text", "numbers_text", "objective_text",
           "program_name"]


def array_text(x: Any) -> str:
    """``[1000, 64] torch.float32`` for a tensor, ``[1000] float64`` for a NumPy array (shape, then dtype); a
    ``repr`` cut to about 40 characters for anything without a shape and a dtype."""
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return reprlib.repr(x)
    try:
        return f"{list(shape)} {dtype}"
    except TypeError:  # a shape that is not a sequence
        return reprlib.repr(x)


def number_text(x: Any, digits: int = 6) -> str:
    """A scalar -- a Python or NumPy number, a 0-d array or tensor -- written with ``digits`` significant digits
    (``nan`` and ``inf`` as such); :func:`array_text` of anything else (an array of one or more dimensions, a
    tensor without data such as a ``meta`` one)."""
    if isinstance(x, bool):
        return str(x)
    if getattr(x, "shape", ()) != ():
        return array_text(x)
    detach = getattr(x, "detach", None)  # a tensor that requires grad: torch warns when it becomes a number
    try:
        value = float(detach() if callable(detach) else x)
    except (TypeError, ValueError, RuntimeError, NotImplementedError):
        return array_text(x)
    return f"{value:.{digits}g}"


def numbers_text(values: Sequence[Any], digits: Sequence[int]) -> list[str]:
    """:func:`number_text` of each value with its ``digits``, the real 0-d tensors among them read from the device
    in one host read (a result's ``repr`` that shows four scalars of a GPU run waits for the device once, not four
    times); the values themselves are not changed.

    :param values: the values.
    :param digits: the significant digits of each value, as many as ``values``."""
    values = list(values)
    scalars = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.dim() == 0
               and not v.is_complex() and v.device.type != "meta"]
    if len(scalars) > 1 and len({values[i].device for i in scalars}) == 1:
        try:
            read = torch.stack([values[i].detach().to(torch.float64) for i in scalars]).tolist()
        except (TypeError, ValueError, RuntimeError, NotImplementedError):  # no float64 there: one read each
            read = None
        if read is not None:
            for i, value in zip(scalars, read):
                values[i] = value
    return [number_text(value, d) for value, d in zip(values, digits)]


def listed(items: Any, head: int = 3, tail: int = 1) -> str:
    """The ``repr`` of the items, comma-separated: all of them when at most ``head + tail + 1``, else the first
    ``head``, ``...`` and the last ``tail`` (``'x0', 'x1', 'x2', ..., 'x99'``); each ``repr`` cut to about 40
    characters.

    :param items: an iterable (of its keys, for a mapping), read once.
    """
    values = list(items)
    shown = values if len(values) <= head + tail + 1 else [*values[:head], ..., *values[len(values) - tail:]]
    return ", ".join("..." if value is ... else reprlib.repr(value) for value in shown)


#: the longest ``repr`` of one setting that :func:`objective_text` shows whole (as the GAN family's ``repr``)
_SETTING_CHARS = 40


def program_name(program: Any) -> str:
    """A model or guide by name: ``VAE.model`` for a bound method, the qualified name of a function, the class of
    any other callable (an autoguide, a module); ``?`` for none (an objective half-built)."""
    if program is None:
        return "?"
    name = getattr(program, "__qualname__", None)
    return name if isinstance(name, str) else type(program).__name__


def model_guide_text(obj: Any) -> str:
    """``RWS(model=SBN.model, guide=SBN.guide, elbo='...', num_particles=5, ..., per_example=True)``: an objective
    of a model and a guide, its programs by name (:func:`program_name`), its ``settings()`` and ``per_example``
    (:func:`objective_text`); the networks are left out (``repr(objective.module)`` shows them).  Never raises: the
    settings of an objective half-built, or a subclass's failing, are left out."""
    try:
        settings = obj.settings()
    except Exception:
        settings = {}
    return objective_text(obj, {"model": program_name(getattr(obj, "model", None)),
                                "guide": program_name(getattr(obj, "guide", None)), **settings,
                                "per_example": getattr(obj, "per_example", "?")})


def objective_text(obj: Any, fields: dict[str, Any]) -> str:
    """``SVIObjective(model=VAE.model, guide=VAE.guide, elbo='DirectTrace_ELBO', num_particles=1)``: the class of
    ``obj`` and each field's ``repr``, cut to 40 characters (ending in ``...``) when longer, as the GAN family's.
    An ELBO's ``tail_adaptive_beta`` at Pyro's ``-1.0`` (unused by every ELBO but ``TraceTailAdaptive_ELBO``) is
    left out."""
    shown = []
    for name, value in fields.items():
        if name == "tail_adaptive_beta" and value == -1.0:
            continue
        text = value if name in ("model", "guide") and isinstance(value, str) else repr(value)
        shown.append(f"{name}={text if len(text) <= _SETTING_CHARS else text[:_SETTING_CHARS - 3] + '...'}")
    return f"{type(obj).__name__}({', '.join(shown)})"


def module_text(module: torch.nn.Module) -> str:
    """``repr(module)`` as :class:`torch.nn.Module` writes it (each child under its name, indented, after the
    module's ``extra_repr``), but each module written once: a module met again further down the tree -- a
    likelihood that is a child of the model, of its GP and of its marginal likelihood -- is written as its class
    and the path of its first place, ``(likelihood): GaussianLikelihood, as gp.likelihood``.  A child whose class
    writes its own ``repr`` is written by it.

    :param module: the module."""
    return _module_lines(module, "", {})


def _module_lines(module: torch.nn.Module, path: str, seen: dict[int, str]) -> str:
    seen[id(module)] = path
    extra = module.extra_repr()
    lines = extra.split("\n") if extra else []
    children = []
    for name, child in module._modules.items():
        where = f"{path}.{name}" if path else name
        if child is not None and id(child) in seen:
            text = f"{type(child).__name__}, as {seen[id(child)] or 'the module itself'}"
        elif child is None or type(child).__repr__ is not torch.nn.Module.__repr__:
            text = repr(child)
            if child is not None:
                seen[id(child)] = where
        else:
            text = _module_lines(child, where, seen)
        children.append(f"({name}): " + text.replace("\n", "\n  "))
    head = f"{module._get_name()}("
    if len(lines) == 1 and not children:
        return head + lines[0] + ")"
    body = lines + children
    return head + ("\n  " + "\n  ".join(body) + "\n" if body else "") + ")"
