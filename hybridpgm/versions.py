"""The versions of the stack a file or a report was written with (model files, the CLI's ``metrics.json`` and
``--version``), read from the installed distributions' metadata: nothing is imported to learn them (importing
GPyTorch only for its version would cost a second and emit its import-time warnings)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["versions"]

#: label -> distribution name
_DISTRIBUTIONS = (("hybridpgm", "hybridpgm"), ("pyro", "pyro-ppl"), ("torch", "torch"), ("gpytorch", "gpytorch"))


def versions() -> dict[str, str | None]:
    """Versions of hybridpgm, Pyro, torch and GPyTorch (``None`` when not installed)."""
    found: dict[str, str | None] = {}
    for label, dist in _DISTRIBUTIONS:
        try:
            found[label] = version(dist)
        except PackageNotFoundError:
            found[label] = None
    return found
