"""A format-1 checkpoint's ``<module>.<Class>`` objective is read as ``Class`` where ``<module>`` is a module the
import system finds, whether or not this process has imported it, and without importing it
(hybridpgm/train/recorded_objective.py, ``is_module``).

Before, a dotted ``<module>`` counted only once imported (``in sys.modules``): the same checkpoint resumed or was
refused depending on what the process happened to have imported (a class since moved out of ``pkg.old``)."""

import sys

import pytest

from hybridpgm.errors import CheckpointError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.recorded_objective import is_module, upgrade_objective_name
from tests.train.test_recorded_objective import as_written_by_d83471e, run


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``carryb_pkg`` with a module ``old`` and a subpackage ``sub`` with ``mod``, on ``sys.path``;
    importing any of them raises (proof that nothing is imported)."""
    root = tmp_path / "carryb_pkg"
    (root / "sub").mkdir(parents=True)
    for path in (root / "__init__.py", root / "old.py", root / "sub" / "__init__.py", root / "sub" / "mod.py"):
        path.write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "carryb_pkg"
    for name in [name for name in sys.modules if name.startswith("carryb_pkg")]:
        del sys.modules[name]


def test_a_module_on_disk_is_found_without_being_imported(package):
    for name in ("carryb_pkg", "carryb_pkg.old", "carryb_pkg.sub", "carryb_pkg.sub.mod"):
        assert is_module(name), name
    for name in ("carryb_pkg.old.Outer", "carryb_pkg.nothing", "carryb_pkg.sub.mod.Obj", "no_such_module_carryb.x",
                 "carryb_pkg..old", "carryb_pkg.1x"):
        assert not is_module(name), name
    assert not [name for name in sys.modules if name.startswith("carryb_pkg")]


@pytest.mark.parametrize("recorded, requested, expected", [
    ("carryb_pkg.old.Obj", "Obj", "Obj"),  # moved since out of a module that still exists, not imported
    ("carryb_pkg.sub.mod.Outer.Obj", "Outer.Obj", "Outer.Obj"),
    ("carryb_pkg.old.Outer.Obj", "Obj", "carryb_pkg.old.Outer.Obj"),  # the nested class Outer.Obj: refused
    ("carryb_pkg.gone.Obj", "Obj", "carryb_pkg.gone.Obj"),  # no such module
])
def test_the_rule_does_not_depend_on_what_was_imported(package, recorded, requested, expected):
    assert upgrade_objective_name(recorded, requested, 1, "elsewhere") == expected
    assert not [name for name in sys.modules if name.startswith("carryb_pkg")]
    assert upgrade_objective_name(recorded, requested, 2, "elsewhere") == recorded  # format 2 never has a module


def test_a_checkpoint_of_a_module_not_imported_resumes(tmp_path):
    """End to end: a format-1 checkpoint recording the class with a dotted module that exists but that this
    process has not imported (``xml.dom.pulldom``: ``<module>.LinearRegression``, the class moved since) resumes
    into a run of ``LinearRegression`` without importing it; a nested class is refused."""
    sys.modules.pop("xml.dom.pulldom", None)
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    as_written_by_d83471e(ckpt, "xml.dom.pulldom.LinearRegression")
    _, result = run(ckpt, max_steps=4)
    assert result.steps == 4 and "xml.dom.pulldom" not in sys.modules
    nested = tmp_path / "nested.pt"
    run(nested, max_steps=2)
    as_written_by_d83471e(nested, "xml.dom.pulldom.Outer.LinearRegression")
    with pytest.raises(CheckpointError, match=r"objective: checkpoint 'xml.dom.pulldom.Outer.LinearRegression'"):
        run(nested, max_steps=4)
    assert load_checkpoint(nested)["step"] == 2


def test_namespace_packages_below_a_package_not_imported_are_found(tmp_path, monkeypatch):
    """PEP 420: a folder without ``__init__.py`` (``ns_rb.team``, a package's ``data`` folder) is a module too.
    ``PathFinder`` builds its ``_NamespacePath`` from the parent in ``sys.modules``: a raw ``KeyError`` escaped
    ``is_module`` and the resume where the parent was not imported (REVIEWB, session 42)."""
    (tmp_path / "ns_rb" / "team").mkdir(parents=True)
    (tmp_path / "ns_rb" / "team" / "old.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / "reg_rb" / "data").mkdir(parents=True)
    (tmp_path / "reg_rb" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("ns_rb", "ns_rb.team", "ns_rb.team.old", "reg_rb.data"):
        assert is_module(name), name
    for name in ("ns_rb.team.gone", "ns_rb.team.old.Obj", "reg_rb.data.gone"):
        assert not is_module(name), name
    assert not [name for name in sys.modules if name.startswith(("ns_rb", "reg_rb"))]
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    as_written_by_d83471e(ckpt, "ns_rb.team.old.LinearRegression")
    _, result = run(ckpt, max_steps=4)
    assert result.steps == 4 and not [name for name in sys.modules if name.startswith("ns_rb")]
