"""Which class of an MRO defines a method, and whether a fast companion method goes with the one it stands for.

A class may offer a *companion* of a method: a faster way to compute the same thing, e.g. an objective's
``loss_and_gradients`` beside its ``loss``, or an RBM's closed-form ``contrastive_gap`` beside its
``positive_phase`` / ``negative_phase``.  A subclass that overrides the method but not the companion would be
bypassed if the caller trusted the inherited companion: the companion *goes with* the method only where the
class that defines the companion is the class that defines the method or a subclass of it
(:func:`goes_with`).  Answers are cached per class in weak-keyed dictionaries, so a class (a notebook cell re-run
defines a new one each time) is freed with its last instance.
"""

from __future__ import annotations

import weakref

__all__ = ["method_owner", "goes_with"]

#: class -> {(companion, method): goes_with}; weak keys, so nothing here keeps a class alive
_GOES_WITH_CACHE: weakref.WeakKeyDictionary[type, dict[tuple[str, str], bool]] = weakref.WeakKeyDictionary()


def method_owner(cls: type, name: str) -> type | None:
    """The first class of ``cls.__mro__`` whose own namespace defines ``name``, or ``None`` where none does.

    >>> class A:
    ...     def f(self): ...
    >>> class B(A): ...
    >>> method_owner(B, "f").__name__, method_owner(B, "g")
    ('A', None)
    """
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def _find_goes_with(cls: type, companion: str, method: str) -> bool:
    owner = method_owner(cls, companion)
    if owner is None:
        return False
    base = method_owner(cls, method)
    return base is None or issubclass(owner, base)


def goes_with(cls: type, companion: str, method: str) -> bool:
    """Whether ``cls`` has a ``companion`` that stands for its ``method``: ``companion`` is defined (or
    inherited) and the class defining it is the class defining ``method`` or a subclass of it (or no class
    defines ``method``).  Cached per class without keeping the class alive.

    :param cls: the class asked about (attributes set on an instance are the caller's to check).
    :param companion: the fast method, e.g. ``"loss_and_gradients"``.
    :param method: the method it must agree with, e.g. ``"loss"``.

    >>> class Base:
    ...     def loss(self): ...
    ...     def loss_and_gradients(self): ...
    >>> class Overrides(Base):
    ...     def loss(self): ...
    >>> goes_with(Base, "loss_and_gradients", "loss"), goes_with(Overrides, "loss_and_gradients", "loss")
    (True, False)
    """
    answers = _GOES_WITH_CACHE.get(cls)
    if answers is None:
        _GOES_WITH_CACHE[cls] = answers = {}
    key = (companion, method)
    found = answers.get(key)
    if found is None:
        answers[key] = found = _find_goes_with(cls, companion, method)
    return found
