"""Evolving signatures: a renamed keyword, or a parameter made keyword-only, still accepted the old way for one
release, with a :class:`FutureWarning`.

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

:func:`keyword_only_soon` is the same step for parameters that become keyword-only: the function is declared with
them after ``*`` (its signature and documentation show the new form), and a caller who still passes them by
position gets them bound as before, with a :class:`FutureWarning` naming them:

>>> class Net:
...     @keyword_only_soon("method", "evidence")
...     def marginals(self, *, method="exact", evidence=None):
...         return method, evidence
>>> Net().marginals(method="bp")
('bp', None)

``Net().marginals("bp")`` returns ``('bp', None)`` too, warning "pass method= by keyword".
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Callable, TypeVar

from hybridpgm.errors import ConfigError
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["as_keywords", "keyword_only_soon", "renamed_keyword"]

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
        method = bool(names) and names[0] == "self"  # named by the instance's class when called

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                position = positions[old]
                # a method is named by the instance's class (BayesNet.sample, not the mixin defining it)
                where = f"{type(args[0]).__name__}.{func.__name__}" if method and args else func.__qualname__
                if new in kwargs or (position is not None and len(args) > position):
                    raise ConfigError(f"{where} got both {new}= and its old name {old}=; pass {new}= alone")
                # past Pyro's and torch's frames too: Pyro runs a model (BayesNet.model, .guide) for the user's
                # svi.step / MCMC.run line
                warnings.warn(f"{where}: the keyword {old}= is renamed {new}=; pass {new}= "
                              f"({old}= will be removed in a future release)", FutureWarning,
                              stacklevel=users_stacklevel(past_libraries=True))
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def keyword_only_soon(*legacy: str) -> Callable[[F], F]:
    """Decorator: keyword-only parameters ``legacy`` that older releases took by position, in that order, after
    the function's positional parameters, still accepted by position for one release.

    A call with ``k`` extra positional arguments binds them to the first ``k`` names of ``legacy`` and warns
    once with a :class:`FutureWarning` naming them (pointing at the caller's line); calls by keyword run with no
    overhead beyond one length check.  The wrapper keeps the function's name, docstring and (keyword-only)
    signature.

    :param legacy: the old positional order of the parameters, each a keyword-only parameter of the function.
    :raises TypeError: (when decorating) a name of ``legacy`` that is not a keyword-only parameter; (when called)
        more positional arguments than the old signature took, as Python would.
    :raises ConfigError: (when called) a parameter passed both by position and by keyword, naming it.
    """

    def decorate(func: F) -> F:
        params = inspect.signature(func).parameters
        for name in legacy:
            if name not in params or params[name].kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"keyword_only_soon: {func.__qualname__} has no keyword-only parameter {name!r}")
        num_positional = sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                             for p in params.values())
        method = next(iter(params), None) == "self"  # named by the instance's class when called

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if len(args) <= num_positional:
                return func(*args, **kwargs)
            extra = args[num_positional:]
            if len(extra) > len(legacy):
                raise TypeError(f"{func.__qualname__} takes at most {num_positional + len(legacy)} positional "
                                f"arguments ({len(args)} given)")
            names = legacy[:len(extra)]
            # a method is named by the instance's class (MarkovNet.marginals, not the mixin defining it)
            where = f"{type(args[0]).__name__}.{func.__name__}" if method else func.__qualname__
            both = [name for name in names if name in kwargs]
            if both:
                raise ConfigError(f"{where} got {both[0]}= both by position and by keyword; pass it by keyword "
                                  "alone")
            passed = ", ".join(f"{name}=" for name in names)
            warnings.warn(f"{where}: pass {passed} by keyword; passing "
                          f"{'it' if len(names) == 1 else 'them'} by position will stop working in a future release",
                          FutureWarning, stacklevel=users_stacklevel())
            return func(*args[:num_positional], **dict(zip(names, extra)), **kwargs)

        wrapper.__legacy_positional__ = (num_positional, legacy)  # for as_keywords
        return wrapper  # type: ignore[return-value]

    return decorate


def as_keywords(func: Callable, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The call ``func(*args, **kwargs)`` with the positional arguments that :func:`keyword_only_soon` binds to
    keyword-only parameters moved into the keywords, without a warning (the wrapper warns when it runs); for code
    that binds a call to ``func``'s (keyword-only) signature itself, as
    :func:`~hybridpgm.serialization_registry.serializable` does.  Other functions' calls come back unchanged."""
    num_positional, legacy = getattr(func, "__legacy_positional__", (len(args), ()))
    if len(args) <= num_positional:
        return args, kwargs
    return args[:num_positional], {**dict(zip(legacy, args[num_positional:])), **kwargs}
