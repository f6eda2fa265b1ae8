"""Every example in the package's docstrings runs and prints what it shows: users copy them.

Each module whose source holds ``>>>`` is imported and its examples run with :mod:`doctest`
(``ELLIPSIS`` on), inside a forked torch RNG and a scoped Pyro parameter store, so that an
example leaves nothing behind for the tests that share the process.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pyro
import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "hybridpgm"
WITH_EXAMPLES = sorted(
    ".".join(("hybridpgm",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py") if ">>>" in path.read_text(encoding="utf-8"))


def test_the_package_has_examples():
    assert len(WITH_EXAMPLES) > 15


def run_examples(module) -> tuple[int, int, str]:
    """``(failures, examples run, report)`` of the docstring examples defined in ``module``."""
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, module.__name__):
        runner.run(test, out=out.write)
    results = runner.summarize(verbose=False)
    return results.failed, results.attempted, out.getvalue()


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    with torch.random.fork_rng(), pyro.get_param_store().scope():
        torch.manual_seed(0)
        failed, attempted, report = run_examples(module)
    assert failed == 0, report


def test_a_wrong_example_is_reported():
    module = type(importlib)("broken_example")
    module.__doc__ = ">>> 1 + 1\n3\n"
    failed, attempted, report = run_examples(module)
    assert (failed, attempted) == (1, 1) and "Expected:\n    3\nGot:\n    2" in report
