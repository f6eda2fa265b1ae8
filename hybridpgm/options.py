"""Constructor options kept as public attributes and checked when assigned: :class:`Option`.

Engines, objectives, callbacks and models keep their constructor options as public attributes that users change
between calls (``bp.damping = 0.5`` in a notebook, ``vae.min_scale = 1e-3``, ``rws.num_particles = 10``).  An
:class:`Option` makes such an attribute

* refuse on assignment what the constructor refuses, with the same error and message: the constructor assigns the
  attribute too, so the check is written once (a plain attribute took any value, and a value the constructor
  refuses -- ``damping = 1.0``, ``k = 0`` -- gave a wrong answer reported as converged, silently no training, or a
  raw error deep in a loop);
* stay in step with what :func:`hybridpgm.save` records of a model: each assignment is recorded with
  :func:`~hybridpgm.serialization_registry.record_argument` (a no-op for an object that is not a registered model,
  and before its constructor returns), so the file keeps the current value, not the constructor's;
* live in one place: the instance's ``__dict__`` under the attribute's own name, where the plain attribute of
  earlier releases was (objects pickled by those releases load unchanged; :func:`vars`, :func:`copy.copy` and
  pickling see the same ``__dict__``), or the attribute of the same name of a part of the object (``owner``: an
  objective's ``elbo``, a GP's ``likelihood``), which the computation reads;
* when its value is built into the object (a parameter shape, persistent chains): be set once, by the constructor,
  a later assignment raising :class:`~hybridpgm.errors.FixedOptionError` (``fixed``).

Reading an option costs one dictionary lookup (no check), so an option read at every step stays cheap.

>>> from hybridpgm.checks import positive_int
>>> class Engine:
...     steps = Option(lambda engine, value: positive_int(value, "Engine steps"))
...     def __init__(self, steps=3):
...         self.steps = steps
>>> engine = Engine()
>>> engine.steps = 0
Traceback (most recent call last):
    ...
hybridpgm.errors.ConfigError: Engine steps must be a positive integer, got 0
>>> engine.steps
3
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

from hybridpgm.errors import FixedOptionError
from hybridpgm.serialization_registry import record_argument

__all__ = ["PARAMETERS_BUILT", "Option"]

#: the ``fixed`` reason of a model's option that decides which parameters it has and their shapes
PARAMETERS_BUILT = "when the model is built (it decides the model's parameters)"


class Option:
    """A data descriptor for the option of a class named as the class attribute it is assigned to.

    Every assignment -- the constructor's ``self.name = value`` included -- holds ``check(instance, value)``
    and then records it (:func:`~hybridpgm.serialization_registry.record_argument`; the attribute's name is the
    constructor argument's).  A refused value raises the check's exception and leaves the old value.

    :param check: ``check(instance, value) -> value to hold``: raises the constructor's exception (with its
        message) on a value the constructor refuses and returns the value, converted as the constructor converts
        it.  It may read the instance's other options, so that a joint rule (``burn_in < num_sweeps``) is checked
        whichever option is set.  ``None``: the value is held as given (a fixed option its constructor checked).
    :param doc: the attribute's docstring; by default one pointing at the class docstring.
    :param owner: the name of the instance's attribute holding the value as its attribute of the same name
        (``owner="elbo"``: ``instance.elbo.<name>``); ``None`` (default): the instance's ``__dict__`` holds it.
    :param fixed: the option cannot change once set: ``None`` (default) for an option that may be assigned
        at any time.  Otherwise an assignment of another value once the option is set (with ``owner``: once the
        owner exists; the constructor sets the owner's attribute itself) raises
        :class:`~hybridpgm.errors.FixedOptionError` -- both a
        :class:`~hybridpgm.errors.ConfigError` and an :class:`AttributeError` (Python's error for a read-only
        attribute) -- with the message ``fixed(instance, value)`` when ``fixed`` is callable, else
        ``"<Class>.<name> is fixed <fixed>: it is <old>, <value> was assigned; build a new <Class> with the other
        value instead"`` (``fixed``: the reason, such as :data:`PARAMETERS_BUILT` or ``"at construction (...)"``).
    :param missing: ``missing(instance) -> value`` read for an instance whose ``__dict__`` lacks the option (one
        pickled by a release before the option existed); ``None`` (default): ``AttributeError`` there.
    """

    def __init__(self, check: Callable[[Any, Any], Any] | None = None, doc: str | None = None, *,
                 owner: str | None = None, fixed: str | Callable[[Any, Any], str] | None = None,
                 missing: Callable[[Any], Any] | None = None):
        self.check, self.owner, self.fixed, self.missing = check, owner, fixed, missing
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, cls: type, name: str) -> None:
        self.name = name
        if self.__doc__ is None:
            self.__doc__ = (f"The ``{name}`` option (see the class docstring); "
                            + ("fixed at construction." if self.fixed is not None else
                               "an assignment checks it as the constructor does."))

    def __get__(self, instance: Any, cls: type | None = None) -> Any:
        if instance is None:
            return self
        if self.owner is None:
            try:
                return instance.__dict__[self.name]
            except KeyError:  # not set yet (an nn.Module's __getattr__ then raises its own AttributeError)
                if self.missing is not None:  # an instance pickled before the option existed
                    return self.missing(instance)
                raise AttributeError(f"{type(instance).__name__!r} object has no attribute {self.name!r}") from None
        return getattr(getattr(instance, self.owner), self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        name, owner = self.name, self.owner
        if owner is not None and not _has(instance, owner):
            # before the constructor made the owner (a subclass setting the option first): held as the plain
            # attribute of earlier releases was, unread; the constructor gives the owner its own value
            instance.__dict__[name] = value
            return
        if self.fixed is not None and (owner is not None or name in instance.__dict__):
            if _same(self.__get__(instance), value):
                return  # the value it holds (a subclass that set it before its base's constructor did)
            raise FixedOptionError(self._fixed_message(instance, value))
        if self.check is not None:
            value = self.check(instance, value)
        if owner is None:
            instance.__dict__[name] = value
        else:
            setattr(getattr(instance, owner), name, value)
        record_argument(instance, name, value)

    def __delete__(self, instance: Any) -> None:
        raise AttributeError(f"{type(instance).__name__}.{self.name} is an option and cannot be deleted")

    def _fixed_message(self, instance: Any, value: Any) -> str:
        if callable(self.fixed):
            return self.fixed(instance, value)
        cls = type(instance).__name__
        return (f"{cls}.{self.name} is fixed {self.fixed}: it is {self.__get__(instance)!r}, {value!r} was "
                f"assigned; build a new {cls} with the other value instead")


def _has(instance: Any, name: str) -> bool:
    """Whether ``instance`` has the attribute ``name`` yet (a sub-module of an ``nn.Module`` included)."""
    try:
        getattr(instance, name)
    except AttributeError:
        return False
    return True


def _same(held: Any, value: Any) -> bool:
    """Whether ``value`` is the value held: the same object, an equal one of the same type, two equal integers
    (``6`` and ``numpy.int64(6)``; not ``6.0`` nor ``True``), or the same items in another sequence type
    (``[6, 4, 3]`` and ``(6, 4, 3)``)."""
    if held is value:
        return True
    if isinstance(held, (list, tuple)) and isinstance(value, (list, tuple)):
        return len(held) == len(value) and all(_same(a, b) for a, b in zip(held, value))
    if _integer(held) and _integer(value):
        return int(held) == int(value)
    try:
        return type(held) is type(value) and bool(held == value)
    except Exception:  # noqa: BLE001 - values without a plain equality (tensors of several entries): not the same
        return False


def _integer(value: Any) -> bool:
    """A Python or NumPy integer, not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"
