"""``hybridpgm.versions.versions``: hybridpgm's own version is the running code's (audit: packaging)."""

from __future__ import annotations

import importlib.metadata

import hybridpgm
from hybridpgm import versions as versions_module


def test_hybridpgm_s_version_is_the_running_code_s_without_installed_metadata(monkeypatch):
    """A checkout run from its folder has no installed metadata (``--version`` printed "hybridpgm None"), and an
    older installed copy's metadata would name another version: the code's ``__version__`` is recorded."""
    real = importlib.metadata.version

    def no_hybridpgm(name):
        if name == "hybridpgm":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(versions_module, "version", no_hybridpgm)
    found = versions_module.versions()
    assert found["hybridpgm"] == hybridpgm.__version__ and found["torch"] == real("torch")
