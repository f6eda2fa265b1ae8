"""How a message shows what it names: a value's type, a long list, the closest known name (re-exported by
:mod:`hybridpgm.checks`).

>>> shown_items(["a", "b", "c"], 2)
"'a', 'b' and 1 more"
>>> close_match("colour", ["color", "size"])
"; did you mean 'color'?"
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

__all__ = ["close_match", "shown_items", "type_name"]


def type_name(value: Any) -> str:
    """The type of ``value`` as messages name it: its public module path and qualified name, the private modules
    under it left out (``pathlib.PosixPath``, which Python 3.13 defines in ``pathlib._local``; ``numpy.ndarray``).
    """
    cls = type(value)
    module = []
    for part in cls.__module__.split("."):
        if part.startswith("_"):
            break
        module.append(part)
    return f"{'.'.join(module)}.{cls.__qualname__}" if module and module != ["builtins"] else cls.__qualname__


def shown_items(items: Iterable, limit: int = 10, *, quote: Callable[[Any], str] = repr) -> str:
    """The first ``limit`` of ``items``, each written by ``quote``, joined by ``", "``, and the count of the others:
    ``"'a', 'b', 'c' and 1997 more"``, so that a message about a long list stays short.

    :param items: any iterable (a list, a tuple, dict keys ...); read once.
    :param limit: how many items to show (``>= 1``).
    :param quote: how to write one item: :func:`repr` (the default) for names, so that a newline or a quote in one
        cannot split or garble the message; :class:`str` for items that are already written out.
    """
    items = list(items)
    shown = ", ".join(quote(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def close_match(name: Any, choices: Iterable) -> str:
    """``"; did you mean 'x'?"`` for the string in ``choices`` closest to ``name`` (:func:`difflib.get_close_matches`,
    its default cutoff 0.6), or ``""`` when none is close, ``name`` is not a string or there are more than
    10,000 choices (to keep it cheap).  Meant to follow the
    "unknown name" part of a message."""
    choices = [c for c in choices if isinstance(c, str)]
    if not isinstance(name, str) or len(choices) > 10_000:  # kept cheap: an error message, not a search
        return ""
    found = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {found[0]!r}?" if found else ""
