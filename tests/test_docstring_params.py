"""Every public callable has a docstring with a ``:param`` field for each parameter of its signature.

The API reference is rendered from the reST docstrings: a callable without a docstring, or one whose docstring
leaves out a parameter, hides that option from the reader; a ``:param`` field for a parameter the signature
lacks documents an option that does not exist.  Every callable exported in the ``__all__`` of the packages of
:data:`PACKAGES` is checked: a function; a class (its docstring together with its ``__init__``'s, against the
signature of the ``__init__`` it defines, or of its ``__new__`` for a named tuple); and each public method defined
in the class's ``__dict__`` or inherited from a class of the package (a mixin such as DBM's likelihood methods).
The rule:

- the callable has a docstring of its own (a class: its own or its ``__init__``'s).  An override does not
  borrow its base class's: ``docs/conf.py`` sets ``autodoc_inherit_docstrings = False`` (torch's
  ``Module.forward`` and ``extra_repr`` texts would otherwise fill the reference), so the reference shows an
  override without one as undocumented;
- each parameter of the signature has a ``:param name:`` field (``:param int name:`` counts too), keyword-only
  ones included: a mention as a word of the text does not count.  A method's ``self``/``cls``, ``*args`` and
  ``**kwargs``, and private ``_name`` parameters (a named tuple's ``_cls``) are exempt.  The signature is
  :func:`inspect.signature`'s, so a deprecation shim of :mod:`hybridpgm.keyword_alias` is checked with the
  parameters of the function it wraps;
- no ``:param x:`` field names a parameter the signature lacks, unless the signature takes ``**kwargs`` and the
  field says the option is passed on (forwarded) to another callable.

All gaps of a package (the one of :data:`PACKAGES` that holds the module defining the callable) are reported in
one sorted list, each prefixed with the callable's module and qualified name; :func:`gaps_by_package` lists them
for a script.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import warnings
from typing import NamedTuple

import pytest

PACKAGES = ("hybridpgm", "hybridpgm.graphs", "hybridpgm.infer", "hybridpgm.energy", "hybridpgm.generative",
            "hybridpgm.gp", "hybridpgm.diagnostics", "hybridpgm.data", "hybridpgm.train", "hybridpgm.serialization",
            "hybridpgm.nn", "hybridpgm.recipes")

PARAM_FIELD = r":param\s+(?:[\w\[\], .|]+\s+)?\*{0,2}%s:"
ANY_PARAM_FIELD = re.compile(r":param\s+(?:[\w\[\], .|]+\s+)?\*{0,2}([\w\\]+):")


def field_name(name: str) -> str:
    """The pattern of ``name`` in a field: reST needs a trailing ``_`` written ``\\_`` (``raise\\_``)."""
    return re.escape(name).replace("_", r"\\?_")


PASSED_ON = re.compile(r"\bpassed\s+(?:on|through|to)\b|\bforwarded\b|\bhanded\s+(?:on|to)\b", re.IGNORECASE)


class Entry(NamedTuple):
    """A checked callable: where it is defined, the function whose signature counts, and its docstring."""

    where: str  # module.qualname of the class / function / method
    package: str  # the entry of PACKAGES that holds its defining module (or, failing that, exports it)
    fn: object
    doc: str | None  # None: no docstring


def _package_of(module: str | None, exporter: str) -> str:
    owners = [p for p in PACKAGES if module and (module == p or module.startswith(p + "."))]
    return max(owners, key=len) if owners else exporter


def _own_doc(obj) -> str | None:
    if obj is None:  # no such attribute (a class without an __init__ of its own): from Python 3.13 on, None's
        return None  # __doc__ is NoneType's ("The type of the None singleton."), which is no docstring of ours
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


@functools.lru_cache(maxsize=None)
def public_callables() -> tuple[Entry, ...]:
    """Every public callable of the packages' ``__all__``, each once."""
    seen, listed, out = set(), set(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for package in PACKAGES:
            module = importlib.import_module(package)
            for name in getattr(module, "__all__", ()):
                obj = getattr(module, name)
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                for entry in _callables_of(obj, package):  # a mixin's methods come with every class that has them
                    if entry.fn is None or id(entry.fn) not in listed:
                        listed.add(id(entry.fn))
                        out.append(entry)
    return tuple(out)


def _callables_of(obj, exporter: str) -> list[Entry]:
    if inspect.isclass(obj):
        where = f"{obj.__module__}.{obj.__qualname__}"
        package = _package_of(obj.__module__, exporter)
        own = [d for d in (_own_doc(obj), _own_doc(obj.__dict__.get("__init__"))) if d]
        if own and own[0].startswith(obj.__name__ + "("):  # the signature a dataclass / namedtuple writes
            own = own[1:]
        doc = "\n\n".join(own) if own else None
        made_by = next((obj.__dict__[m] for m in ("__init__", "__new__") if m in obj.__dict__), None)
        if isinstance(made_by, staticmethod):
            made_by = made_by.__func__
        found = [Entry(where, package, made_by, doc)]
        # its own methods and those of the package's mixins and bases it inherits (DBM's likelihood methods live in
        # a mixin the package does not export; a method overridden below is the one a user calls)
        named = set()
        for owner in obj.__mro__:
            if owner is not obj and not owner.__module__.startswith("hybridpgm"):
                continue
            for attr, value in owner.__dict__.items():
                if attr.startswith("_") or attr in named:
                    continue
                named.add(attr)
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if inspect.isfunction(value):
                    found.append(Entry(f"{owner.__module__}.{owner.__qualname__}.{attr}",
                                       _package_of(owner.__module__, exporter), value, _own_doc(value)))
        return found
    if callable(obj) and (inspect.isfunction(obj) or inspect.isbuiltin(obj) or hasattr(obj, "__wrapped__")):
        module = getattr(obj, "__module__", None)
        where = f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
        return [Entry(where, _package_of(module, exporter), obj, _own_doc(obj))]
    return []


def _field_text(doc: str, start: int) -> str:
    """The text of the field that starts at ``start``: up to the next field or blank line."""
    end = re.search(r"\n\s*\n|\n\s*:", doc[start + 1:])
    return doc[start:start + 1 + end.start()] if end else doc[start:]


def problems(fn, doc: str | None) -> list[str]:
    """What the docstring ``doc`` of ``fn`` lacks or gets wrong, by the module's rule (empty: nothing)."""
    if doc is None:
        return ["no docstring"]
    if fn is None:  # a class that inherits its __init__: its docstring is all there is to check
        return []
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
        return []
    params = list(signature.parameters.values())
    # the instance or class a method is bound to (a function's own parameter named ``cls`` is checked)
    bound = params[0].name if params and (params[0].name == "self" or params[0].name == "cls"
                                          and "." in fn.__qualname__) else None
    found = []
    for p in params:
        if p.name == bound or p.name.startswith("_") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not re.search(PARAM_FIELD % field_name(p.name), doc):
            found.append(f"{p.name}: no :param field")
    names = {p.name for p in params}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    for field in ANY_PARAM_FIELD.finditer(doc):
        name = field.group(1).replace("\\", "")
        if name in names:
            continue
        if takes_kwargs and PASSED_ON.search(_field_text(doc, field.start())):
            continue
        found.append(f"{name}: :param field for no parameter of the signature")
    return sorted(set(found))


@functools.lru_cache(maxsize=None)
def gaps_by_package() -> dict[str, tuple[str, ...]]:
    """``{package: sorted gaps}``, a gap reading ``module.qualname: problem``."""
    out: dict[str, list[str]] = {package: [] for package in PACKAGES}
    for entry in public_callables():
        out[entry.package].extend(f"{entry.where}: {problem}" for problem in problems(entry.fn, entry.doc))
    return {package: tuple(sorted(gaps)) for package, gaps in out.items()}


def test_the_check_covers_the_public_api():
    names = {entry.where for entry in public_callables()}
    assert {"hybridpgm.infer.nvil.NVIL", "hybridpgm.graphs.bn_queries.BayesNetQueries.posterior",
            "hybridpgm.nn.mlp"} <= names
    assert len(names) > 150


@pytest.mark.parametrize("package", PACKAGES)
def test_every_parameter_is_documented(package):
    gaps = gaps_by_package()[package]
    assert not gaps, f"{len(gaps)} docstring gaps in {package}:\n" + "\n".join(gaps)


def _example(a, b, *args, c=1, d=2, **kwargs):
    """An example.

    :param a: the first.
    :param int c: the third; ``b`` and ``d`` are mentioned only.
    :param e: passed on to another function.
    """


def _example_extra(x):
    """An example with a field for a parameter it does not have.

    :param x: the input.
    :param y: the other input.
    """


def _undocumented(x):
    pass


class _Base:
    def step(self, x, y=None):
        """A step.

        :param x: the input.
        :param y: the target.
        """

    def other(self, x):
        """Takes ``x``."""


class _Derived(_Base):
    def step(self, x, y=None):
        pass

    def other(self, x):
        pass


@pytest.mark.parametrize("fn, doc, expected", [
    (_example, inspect.getdoc(_example), ["b: no :param field", "d: no :param field"]),
    (_example_extra, inspect.getdoc(_example_extra), ["y: :param field for no parameter of the signature"]),
    (_undocumented, None, ["no docstring"]),
])
def test_a_gap_is_found(fn, doc, expected):
    assert problems(fn, doc) == expected


def test_an_override_needs_a_docstring_of_its_own():
    """The docs build does not inherit docstrings, so a documented base method does not cover an override."""
    assert [(e.where.rsplit(".", 1)[-1], e.doc is None) for e in _callables_of(_Derived, "hybridpgm")] == [
        ("_Derived", True), ("step", True), ("other", True)]
    assert problems(_Derived.step, None) == ["no docstring"]
