"""Every parameter of a public callable is named in its docstring, when that docstring documents parameters.

The API reference is rendered from the reST docstrings: a callable whose docstring has a ``:param`` list but
leaves out a parameter of its signature hides that option from the reader.  Every callable exported in the
``__all__`` of the package and its subpackages is checked (a class with its ``__init__`` and public methods):
when its docstring (a class's together with its ``__init__``'s) holds a ``:param`` field, each parameter of the
signature (``self``/``cls`` and ``*args``/``**kwargs`` aside) must be named in it, as a ``:param`` field or as a
word of the text (``name``, as in "``x``: targets").
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings

import pytest

PACKAGES = ("hybridpgm", "hybridpgm.graphs", "hybridpgm.infer", "hybridpgm.energy", "hybridpgm.generative",
            "hybridpgm.gp", "hybridpgm.diagnostics", "hybridpgm.data", "hybridpgm.train", "hybridpgm.serialization")


def public_callables() -> list[tuple[str, object, str]]:
    """``(qualified name, callable whose signature is checked, docstring)`` of every public callable."""
    seen, out = set(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for package in PACKAGES:
            module = importlib.import_module(package)
            for name in getattr(module, "__all__", ()):
                obj = getattr(module, name)
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                out.extend(_callables_of(f"{package}.{name}", obj))
    return out


def _callables_of(qualname: str, obj) -> list[tuple[str, object, str]]:
    if inspect.isclass(obj):
        found = []
        if "__init__" in obj.__dict__:
            doc = (inspect.getdoc(obj) or "") + "\n" + (inspect.getdoc(obj.__init__) or "")
            found.append((qualname, obj.__init__, doc))
        for attr, value in obj.__dict__.items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value):
                found.append((f"{qualname}.{attr}", value, inspect.getdoc(value) or ""))
        return found
    if callable(obj) and (inspect.isfunction(obj) or inspect.isbuiltin(obj) or hasattr(obj, "__wrapped__")):
        return [(qualname, obj, inspect.getdoc(obj) or "")]
    return []


def undocumented(fn, doc: str) -> list[str]:
    """The parameters of ``fn``'s signature named nowhere in ``doc`` (none when ``doc`` has no ``:param``)."""
    if ":param" not in doc:
        return []
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
        return []
    missing = []
    for p in signature.parameters.values():
        if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        field = r":param\s+(?:[\w\[\], .|]+\s+)?\*{0,2}%s:" % re.escape(p.name)
        if re.search(field, doc) or re.search(r"\b%s\b" % re.escape(p.name.rstrip("_")), doc):
            continue
        missing.append(p.name)
    return missing


def all_gaps() -> set[str]:
    return {f"{name}({param}=)" for name, fn, doc in public_callables() for param in undocumented(fn, doc)}


def test_the_check_covers_the_public_api():
    names = {name for name, _, _ in public_callables()}
    assert {"hybridpgm.NVIL", "hybridpgm.BayesNet.posterior", "hybridpgm.generative.gan_networks"} <= names
    assert len(names) > 150


def test_every_parameter_is_documented():
    gaps = sorted(all_gaps())
    assert not gaps, "parameters named nowhere in a docstring that has a :param list:\n" + "\n".join(gaps)


def _example(a, b, *args, c=1, **kwargs):
    """An example.

    :param a: the first.
    :param int c: the third.
    """


def _example_in_text(x, y):
    """``x`` and ``y``: the windows and their targets.

    :param x: see above.
    """


@pytest.mark.parametrize("fn, missing", [(_example, ["b"]), (_example_in_text, [])])
def test_a_missing_parameter_is_found(fn, missing):
    assert undocumented(fn, inspect.getdoc(fn)) == missing
