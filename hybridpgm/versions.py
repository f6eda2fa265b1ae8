"""The versions of the stack a file or a report was written with (model files, the CLI's ``metrics.json`` and
``--version``): hybridpgm's from the code that runs (``hybridpgm.__version__``: a checkout run from its folder has
no installed metadata, and an older installed copy's would be wrong), the others read from the installed
distributions' metadata: nothing is imported to learn them (importing GPyTorch only for its version would cost a
second and emit its import-time warnings)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["versions"]

#: label -> distribution name
_DISTRIBUTIONS = (("pyro", "pyro-ppl"), ("torch", "torch"), ("gpytorch", "gpytorch"))


def versions() -> dict[str, str | None]:
    """Versions of hybridpgm (the running code's), Pyro, torch and GPyTorch (``None`` when not installed)."""
    import hybridpgm  # imported already: this module is part of it

    found: dict[str, str | None] = {"hybridpgm": hybridpgm.__version__}
    for label, dist in _DISTRIBUTIONS:
        try:
            found[label] = version(dist)
        except PackageNotFoundError:
            found[label] = None
    return found
