"""Checks of the names a model gives Pyro (its ``name=``, ``prefix=``) and of lists of names, raising
:mod:`hybridpgm.errors` exceptions that name the argument (re-exported by :mod:`hybridpgm.checks`).

>>> site_prefix("left_", "MarkovNet.model")
'left_'
>>> name_list({"b", "a"}, "freeze names")
['a', 'b']
"""

from __future__ import annotations

from hybridpgm.checks_messages import type_name
from hybridpgm.errors import ConfigError, ModelSpecError

__all__ = ["PYRO_MODULE_SEPARATOR", "module_name", "name_list", "site_prefix"]


def name_list(value, what: str, *, error: type[Exception] = ConfigError) -> list[str]:
    """Names given as an iterable of strings (a list, a tuple, ``dict.keys()``, a set ...), as a list; a bare
    string is refused: iterated, ``"head"`` would be the one-letter names ``'h', 'e', 'a', 'd'``.

    :raises error: naming ``what`` and the value."""
    if isinstance(value, (str, bytes)):
        raise error(f"{what} is a list of names, got the string {value!r:.60}: pass [{value!r:.60}]")
    try:
        names = sorted(value) if isinstance(value, (set, frozenset)) else list(value)  # a set: in a stable order
    except TypeError:
        names = None
    if names is None or not all(isinstance(name, str) for name in names):
        raise error(f"{what} must be a list of names (strings), got {type_name(value)} {value!r:.60}")
    return names


#: what Pyro writes between a module's name and its parameters' names in the param store
#: (``"<module>$$$<parameter>"``); ``pyro.module`` asserts that no module name holds it
PYRO_MODULE_SEPARATOR = "$$$"


def site_prefix(prefix, where: str, *, names_module: bool = False) -> str:
    """``prefix`` checked: the string a model's ``prefix=`` keyword prepends to its site and plate names (where
    ``names_module``, as for :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`, also to the ``pyro.module``
    name of its parameters).

    :param bool names_module: the prefix also names a ``pyro.module``, so ``"$$$"`` is refused (sample sites and
        plates may hold it).
    :raises ConfigError: a ``prefix`` that is not a ``str``, or (``names_module``) one holding ``"$$$"`` (Pyro's
        separator between a module's name and its parameters' names, which ``pyro.module`` refuses), naming
        ``where`` and the value."""
    if not isinstance(prefix, str):
        raise ConfigError(f"{where} prefix must be a string (prepended to its Pyro site and plate names), got "
                          f"{type(prefix).__name__} {prefix!r:.60}")
    if names_module and PYRO_MODULE_SEPARATOR in prefix:
        raise ConfigError(f"{where} prefix={prefix!r:.60} holds '$$$', Pyro's separator between a module's name and "
                          f"its parameters' names; use another separator (e.g. '_')")
    return prefix


def module_name(name, where: str) -> str:
    """``name`` checked: the ``name`` a :class:`~pyro.nn.PyroModule` gives its parameters in Pyro's param store
    (``"<name>.<attribute>"``, or ``"<name>.<submodule>$$$<parameter>"``; ``""``: the attribute names alone).

    :raises ModelSpecError: a ``name`` that is not a ``str``, or one holding ``"$$$"`` (Pyro's separator between a
        module's name and its parameters' names, which ``pyro.module`` refuses at the first step), naming ``where``
        and the value."""
    if not isinstance(name, str):
        raise ModelSpecError(f"{where} name must be a string (the prefix of its parameters' names in Pyro's param "
                             f"store), got {type(name).__name__} {name!r:.60}")
    if PYRO_MODULE_SEPARATOR in name:
        raise ModelSpecError(f"{where} name={name!r:.60} holds '$$$', Pyro's separator between a module's name and "
                             f"its parameters' names; use another separator (e.g. '_')")
    return name
