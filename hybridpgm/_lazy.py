"""Lazy public names for package ``__init__`` modules (PEP 562).

``import hybridpgm`` stays cheap (no ArviZ, GPyTorch, matplotlib, pgmpy or
scikit-learn until a name that needs them is first used), while
``hybridpgm.VAE`` and ``from hybridpgm import VAE`` work as if every name were
imported eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` resolving ``names``.

    :param package: the package's ``__name__``.
    :param names: public name -> module that defines it (a submodule named
        like the public name is the module itself).  A function named like
        the submodule that holds it must be imported eagerly instead: importing
        the submodule binds its name on the package, and ``__getattr__`` would
        never run.
    :param namespace: the package's ``globals()``; each name is cached there on
        first use, so ``__getattr__`` runs once per name.
    """

    def __getattr__(name: str) -> Any:
        try:
            module_name = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(module_name)
        value = module if module_name == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
