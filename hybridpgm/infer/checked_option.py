"""Options of engines and objectives that are checked when assigned, as their constructor checks them.

An inference engine or objective (:class:`~hybridpgm.infer.BeliefPropagation`, :class:`~hybridpgm.infer.AIS`,
:class:`~hybridpgm.infer.ContrastiveDivergence`, ...) keeps its options as public attributes that users change
between calls (``bp.damping = 0.5`` in a notebook).  A :class:`CheckedOption` makes such an attribute refuse on
assignment what the constructor refuses, with the same error and message: a plain attribute took any value, and a
value the constructor refuses (``damping = 1.0``, ``k = 0``) gave a wrong answer reported as converged, silently no
training, or a raw error deep in a loop.

Reading an option costs one dictionary lookup (no check), so an option read on every step stays cheap.
"""

from __future__ import annotations

from typing import Any, Callable

from hybridpgm.errors import ConfigError

__all__ = ["CheckedOption"]


class CheckedOption:
    """A data descriptor for the option ``name`` of a class, checked on every assignment (the constructor's
    ``self.name = value`` included): the instance holds ``check(instance, value)``.

    ``check`` returns the value to hold (``positive_int(value, ...)``) or raises; it may read the instance's other
    options, so a joint rule (``burn_in < num_sweeps``) is checked whichever option is set.

    The value is held in the instance's ``__dict__`` under ``name`` itself, where the plain attribute of earlier
    releases was (the descriptor, a data descriptor, takes precedence over it): an instance pickled by an earlier
    release loads with its value as it was, and :func:`vars`, :func:`copy.copy` and pickling see the same
    ``__dict__`` as before.

    :param check: ``check(instance, value) -> value to hold``; raises on a value the constructor refuses.
    :param doc: the attribute's docstring; by default one pointing at the class docstring.
    :param frozen: for an option that cannot change once the constructor has set it (the value is built into the
        instance's state, as :class:`~hybridpgm.infer.PersistentCD`'s chains are): ``frozen(instance)`` gives the
        message of the :class:`~hybridpgm.errors.ConfigError` that a later assignment raises.
    """

    def __init__(self, check: Callable[[Any, Any], Any], doc: str | None = None, *,
                 frozen: Callable[[Any], str] | None = None):
        self.check, self.frozen = check, frozen
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.__doc__ is None:
            self.__doc__ = (f"The ``{name}`` option (see the class docstring); "
                            + ("fixed at construction." if self.frozen else
                               "an assignment checks it as the constructor does."))

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:  # not set yet (an nn.Module's __getattr__ then raises its own AttributeError)
            raise AttributeError(f"{type(instance).__name__!r} object has no attribute {self.name!r}") from None

    def __set__(self, instance: Any, value: Any) -> None:
        if self.frozen is not None and self.name in instance.__dict__:
            raise ConfigError(self.frozen(instance))
        instance.__dict__[self.name] = self.check(instance, value)

    def __delete__(self, instance: Any) -> None:
        raise AttributeError(f"{type(instance).__name__}.{self.name} is an option and cannot be deleted")
