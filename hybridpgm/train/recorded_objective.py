"""The objective's class a checkpoint records, read as this release writes it.

A checkpoint records the class of the objective it trained (``config["objective"]``) by its qualified name without
the module, ``"SVIObjective"`` (:func:`~hybridpgm.train.resume.run_config`), and a resume compares it with the
request's (:func:`~hybridpgm.train.resume.check_resumable`). The development versions between commits d83471e and
c137faf recorded it *with* the module, ``"hybridpgm.infer.svi.SVIObjective"``, in checkpoints of format 1; every
other checkpoint of format 1 records no objective, and a checkpoint of format 2 or later never records the module.
:func:`upgrade_objective_name` reads such a format-1 name ``"<module>.<requested>"`` as the requested qualified name
when its ``<module>`` is a module: one name (``"__main__"``, ``"train"``: a module name has at least one, so a
one-name prefix is the whole module), the module the requested class is defined in now, a module this process has
imported, or a module the import system finds (:func:`is_module`: found, not imported, so the answer does not depend
on what the process happened to import, and no module's code runs). The module itself is not compared, as for a
checkpoint written now (a class of a script run as ``__main__`` resumes where the script is imported), but the
qualified name is, exactly, as format 2 compares it: ``"mod.Other.SVIObjective"`` is the class
``Other.SVIObjective`` of a module ``mod`` unless ``mod.Other`` is a module, and is not read as ``SVIObjective``.
Such a file resumes with the call that wrote it instead of being refused as trained with another objective.

A class of hybridpgm renamed since is read by its new name (:data:`RENAMED`): ``SVDeepKernelGP.objective()``'s
``_SVDKLObjective`` of ``hybridpgm.gp.sv_deep_kernel`` is ``SVDKLObjective`` of ``hybridpgm.gp.sv_objective``
since 82e8bc4, so that its checkpoints of any format (``"hybridpgm.gp.sv_deep_kernel._SVDKLObjective"`` in format
1, ``"_SVDKLObjective"`` after) resume into a run of the class it became.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
from typing import Any

__all__ = ["MODULE_FORMAT", "RENAMED", "is_module", "upgrade_objective_name"]

#: the only checkpoint format (:data:`~hybridpgm.train.checkpoint.FORMAT_VERSION`) whose files may record the
#: objective's class as ``module.QualifiedName``
MODULE_FORMAT = 1

#: hybridpgm's objective classes renamed since a checkpoint recorded them: the recorded name (with its module in
#: format 1) -> the class's module and qualified name now
RENAMED: dict[str, tuple[str, str]] = {
    "_SVDKLObjective": ("hybridpgm.gp.sv_objective", "SVDKLObjective"),  # 82e8bc4
    "hybridpgm.gp.sv_deep_kernel._SVDKLObjective": ("hybridpgm.gp.sv_objective", "SVDKLObjective"),
}


def upgrade_objective_name(recorded: Any, requested: Any, format_version: Any, module: str | None = None) -> Any:
    """The recorded objective ``recorded`` as this release would have written it.

    :param recorded: the checkpoint's ``config["objective"]`` (anything: a damaged file's value is returned as it
        is, for :func:`~hybridpgm.train.resume.check_resumable` to name).
    :param requested: the request's ``config["objective"]``: the objective's ``__qualname__``, or ``None``.
    :param format_version: the checkpoint's ``"format_version"``.
    :param module: the module the requested objective's class is defined in (its ``__module__``), if known.
    :returns: ``requested`` where ``recorded`` is ``"<module>.<requested>"`` in a checkpoint of format
        :data:`MODULE_FORMAT` and ``<module>`` is a module (one name, ``module``, or :func:`is_module`), or
        the old name of ``module``'s ``requested`` (:data:`RENAMED`); ``recorded`` unchanged otherwise (another
        class, another format, no record).

    >>> upgrade_objective_name("hybridpgm.infer.svi.SVIObjective", "SVIObjective", 1, "hybridpgm.infer.svi")
    'SVIObjective'
    >>> upgrade_objective_name("__main__.SVIObjective", "SVIObjective", 1)
    'SVIObjective'
    >>> upgrade_objective_name("no_such_module.Other.SVIObjective", "SVIObjective", 1)
    'no_such_module.Other.SVIObjective'
    >>> upgrade_objective_name("hybridpgm.infer.svi.SVIObjective", "GAN", 1)
    'hybridpgm.infer.svi.SVIObjective'
    >>> upgrade_objective_name("_SVDKLObjective", "SVDKLObjective", 2, "hybridpgm.gp.sv_objective")
    'SVDKLObjective'
    """
    if isinstance(recorded, str) and isinstance(requested, str) and RENAMED.get(recorded) == (module, requested):
        return requested
    if format_version == MODULE_FORMAT and isinstance(recorded, str) and isinstance(requested, str) \
            and recorded.endswith("." + requested):
        prefix = recorded[:-len(requested) - 1]
        if "." not in prefix or prefix == module or is_module(prefix):
            return requested
    return recorded


def is_module(name: str) -> bool:
    """Whether ``name`` names a module: one this process has imported (:data:`sys.modules`), or one the import
    system finds without importing anything: its first name by :func:`importlib.util.find_spec` (the finders of
    :data:`sys.meta_path`), each further name by the path entry finders (:func:`pkgutil.get_importer`: folders,
    zip files) of the folders of the package before it, as :class:`importlib.machinery.PathFinder` searches them
    (a folder without ``__init__.py`` is a portion of a namespace package, PEP 420).  No module's code runs, so the
    answer is the same before and after the module is imported.

    >>> is_module("json.decoder"), is_module("json.decoder.JSONDecoder"), is_module("no_such_module.mod")
    (True, False, False)
    """
    if name in sys.modules:
        return True
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: no parent package to import
    except (ImportError, ValueError):
        return False
    found, folders = spec is not None, None if spec is None else spec.submodule_search_locations
    for i in range(1, len(parts)):
        if folders is None:  # not found, or not a package: no submodule
            return False
        parent = sys.modules.get(".".join(parts[:i]))
        found, folders = _submodule(".".join(parts[:i + 1]), list(getattr(parent, "__path__", None) or folders))
    return found


def _submodule(name: str, folders: list) -> tuple[bool, list | None]:
    """Whether the submodule ``name`` of a package whose folders are ``folders`` is found, and its own folders
    (``None``: not a package).  :class:`~importlib.machinery.PathFinder`'s search, without the ``_NamespacePath`` it
    builds for a namespace package, which reads the parent package from :data:`sys.modules` (a ``KeyError`` where it
    is not imported)."""
    portions = []
    for folder in folders:
        finder = pkgutil.get_importer(folder)
        spec = finder.find_spec(name) if hasattr(finder, "find_spec") else None
        if spec is not None and spec.loader is not None:
            return True, None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)
        if spec is not None:  # a portion of a namespace package: the search goes on
            portions += list(spec.submodule_search_locations or ())
    return bool(portions), portions or None
