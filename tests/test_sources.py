"""Every source file of the package compiles without a warning.

An invalid escape sequence in a docstring (``:math:`\\sqrt{x}``` in a non-raw string) is a
``DeprecationWarning`` on Python 3.11 and a ``SyntaxWarning`` from 3.12; under ``python -W error``
(as some users and test runners import) it makes ``import hybridpgm`` fail.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hybridpgm"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_sources():
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_source_compiles_without_warnings(path):
    source = path.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(source, str(path), "exec")


def test_an_invalid_escape_is_caught():
    with warnings.catch_warnings(), pytest.raises((SyntaxError, DeprecationWarning, SyntaxWarning)):
        warnings.simplefilter("error")
        compile('"""math: \\sqrt{x}"""\n', "<docstring>", "exec")


def test_the_version_is_the_installed_distributions():
    """``hybridpgm.__version__`` is typed in ``__init__.py`` and the distribution's version in pyproject.toml:
    nothing else keeps the two alike."""
    import importlib.metadata

    import hybridpgm

    assert hybridpgm.__version__ == importlib.metadata.version("hybridpgm")
