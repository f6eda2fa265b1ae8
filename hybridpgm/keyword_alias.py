"""Renamed keyword arguments: the old name still accepted for one release, with a :class:`FutureWarning`.

hybridpgm spells a count of draws ``num_samples`` in every family (``RBM.sample``, ``BayesNet.sample``,
``VAE.log_likelihood``, ...).  Methods that spelled it otherwise (``VAE.sample(n)``, the adversarial objectives'
``sample(n)`` / ``generate(n)``, ``RBM.random_visible(num)``) take ``num_samples`` now, and
``IWGAN.grouped_samples(n)``, whose ``n`` counts groups, takes ``num_groups``; :func:`renamed_keyword` keeps the
old keyword working for one release:

>>> class Model:
...     @renamed_keyword(n="num_samples")
...     def sample(self, num_samples):
...         return num_samples
>>> Model().sample(3), Model().sample(num_samples=3)
(3, 3)

``Model().sample(n=3)`` returns 3 too, with a :class:`FutureWarning` that names the new keyword (pointing at the
caller's line); ``Model().sample(3, n=3)`` or ``Model().sample(num_samples=3, n=3)`` raises a
:class:`~hybridpgm.errors.ConfigError`.  Positional calls never warn.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Callable, TypeVar

from hybridpgm.errors import ConfigError
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["renamed_keyword"]

F = TypeVar("F", bound=Callable)


def renamed_keyword(**renames: str) -> Callable[[F], F]:
    """Decorator: accept each ``old=`` keyword of ``renames`` (``old="new"``) as the parameter ``new``.

    ``new`` must be a parameter of the decorated function that can be passed by position or keyword;
    the wrapper keeps the function's name, docstring and signature (:func:`functools.wraps`).

    :raises TypeError: (when decorating) ``new`` is not such a parameter, or ``old`` is one.

    The decorated function, called with ``old=``, warns with a :class:`FutureWarning` naming ``new`` and runs
    as if called with ``new=``; called with both (``new`` by keyword or by position), it raises a
    :class:`~hybridpgm.errors.ConfigError` naming both.
    """

    def decorate(func: F) -> F:
        params = list(inspect.signature(func).parameters.values())
        names = [p.name for p in params]
        positions = {}
        for old, new in renames.items():
            if new not in names or params[names.index(new)].kind not in (
                    inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                raise TypeError(f"renamed_keyword: {func.__qualname__} has no parameter {new!r} to rename {old!r} to")
            if old in names:
                raise TypeError(f"renamed_keyword: {func.__qualname__} still has a parameter {old!r}")
            keyword_only = params[names.index(new)].kind is inspect.Parameter.KEYWORD_ONLY
            positions[old] = None if keyword_only else names.index(new)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                position = positions[old]
                if new in kwargs or (position is not None and len(args) > position):
                    raise ConfigError(f"{func.__qualname__} got both {new}= and its old name {old}=; pass "
                                      f"{new}= alone")
                warnings.warn(f"{func.__qualname__}: the keyword {old}= is renamed {new}=; pass {new}= "
                              f"({old}= will be removed in a future release)", FutureWarning,
                              stacklevel=users_stacklevel())
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
