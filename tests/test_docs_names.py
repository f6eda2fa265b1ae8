"""Every dotted ``hybridpgm.…`` name written in backticks in the README and ``docs/*.md`` resolves.

Prose names a function or class by its import path (``hybridpgm.infer.particle_elbo.importance_log_likelihood``);
a user types that path. A name that moved, or that a package never exported, fails here naming the file and
line. The longest importable module prefix is imported, the rest is read with ``getattr``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
DOTTED = re.compile(r"`(hybridpgm(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def resolve(name: str):
    """The object ``name`` stands for: the longest importable prefix, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for attribute in parts[cut:]:
        obj = getattr(obj, attribute)
    return obj


def names_in(path: Path):
    """``(line number, dotted name)`` for each backticked ``hybridpgm.…`` name of ``path``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in DOTTED.finditer(line):
            yield number, match.group(1)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_name_resolves(path):
    unresolved = []
    for number, name in names_in(path):
        try:
            resolve(name)
        except (AttributeError, ImportError) as error:
            unresolved.append(f"{path.relative_to(ROOT)}:{number}: {name} ({error})")
    assert not unresolved, "\n".join(unresolved)


def test_the_check_sees_a_name_that_does_not_resolve(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `hybridpgm.infer.no_such_function` and `hybridpgm.fit`.\n", encoding="utf-8")
    found = list(names_in(page))
    assert found == [(1, "hybridpgm.infer.no_such_function"), (1, "hybridpgm.fit")]
    with pytest.raises(AttributeError):
        resolve(found[0][1])
    assert callable(resolve(found[1][1]))
