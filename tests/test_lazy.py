"""``import hybridpgm`` then ``hybridpgm.<subpackage>.<name>``: every public subpackage and module resolves on
first use, in a fresh interpreter (hybridpgm/_lazy.py, hybridpgm/__init__.py)."""

import json
import subprocess
import sys

import pytest

PUBLIC = ("bayesian_nn", "data", "diagnostics", "energy", "errors", "generative", "gp", "graphs", "infer", "nn",
          "recipes", "serialization", "train", "transform_scope")


@pytest.mark.parametrize("name", PUBLIC)
def test_a_public_subpackage_is_an_attribute_after_import_hybridpgm(name):
    """Before, only ``data``, ``diagnostics`` and ``errors`` were: ``hybridpgm.infer.GroupedAdam`` (the
    example in its own docstring) raised ``AttributeError`` in a fresh notebook."""
    code = f"import hybridpgm, importlib; m = hybridpgm.{name}; " \
           f"print(m is importlib.import_module('hybridpgm.{name}'), '{name}' in dir(hybridpgm))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]


def test_the_subpackages_are_imported_only_when_used():
    """Listing them costs nothing: ``import hybridpgm`` imports none of the heavy subpackages."""
    code = "import sys, json, hybridpgm; dir(hybridpgm); print(json.dumps(sorted(m for m in sys.modules if " \
           "m in ('hybridpgm.gp', 'hybridpgm.infer', 'hybridpgm.graphs', 'hybridpgm.recipes'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
