"""A format-1 checkpoint's ``module.Class`` objective is read as ``Class`` only where ``module`` is a module: the
qualified name is compared exactly, as in format 2 (hybridpgm/train/recorded_objective.py).

Before, any recorded name ending in ``.<requested>`` was read as the requested class: ``"mod.Other.SVIObjective"``
(the nested class ``Other.SVIObjective`` of ``mod``) resumed into a run of ``SVIObjective``, which a format-2
checkpoint recording ``"Other.SVIObjective"`` was refused."""

import json.decoder  # noqa: F401  (a dotted module this process has imported)

import pytest

from hybridpgm.errors import CheckpointError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.recorded_objective import upgrade_objective_name
from tests.train.test_recorded_objective import as_written_by_d83471e, run


@pytest.mark.parametrize("recorded, requested, module, expected", [
    ("no_such_module.Other.SVIObjective", "SVIObjective", None, "no_such_module.Other.SVIObjective"),
    ("hybridpgm.infer.svi.Other.SVIObjective", "SVIObjective", "hybridpgm.infer.svi",
     "hybridpgm.infer.svi.Other.SVIObjective"),  # the nested class Other.SVIObjective of hybridpgm.infer.svi
    ("pkg.mod.Outer.Obj", "Obj", "pkg.mod", "pkg.mod.Outer.Obj"),
    # the module, read exactly: the module the class is in now, one name, or an imported module
    ("pkg.mod.Outer.Obj", "Outer.Obj", "pkg.mod", "Outer.Obj"),
    ("hybridpgm.infer.svi.SVIObjective", "SVIObjective", "hybridpgm.infer.svi", "SVIObjective"),
    ("__main__.SVIObjective", "SVIObjective", "train", "SVIObjective"),  # a script's class, imported now
    ("train.SVIObjective", "SVIObjective", "__main__", "SVIObjective"),  # and the other way round
    ("__mp_main__.Outer.Obj", "Outer.Obj", None, "Outer.Obj"),
    ("json.decoder.Obj", "Obj", "elsewhere", "Obj"),  # moved since, from a module that is still imported
])
def test_the_qualified_name_is_compared_exactly(recorded, requested, module, expected):
    assert upgrade_objective_name(recorded, requested, 1, module) == expected


def test_a_checkpoint_of_a_nested_class_of_the_same_name_is_refused(tmp_path):
    """End to end: a format-1 checkpoint of ``tests.train.helpers.Outer.LinearRegression`` (no module
    ``tests.train.helpers.Outer``) is refused by a run of ``tests.train.helpers.LinearRegression``, as a format-2
    one recording ``Outer.LinearRegression`` is; the module's own class still resumes."""
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    as_written_by_d83471e(ckpt, "tests.train.helpers.Outer.LinearRegression")
    with pytest.raises(CheckpointError, match=r"objective: checkpoint 'tests.train.helpers.Outer.LinearRegression', "
                                              r"requested 'LinearRegression'"):
        run(ckpt, max_steps=4)
    assert load_checkpoint(ckpt)["step"] == 2  # untouched
    same = tmp_path / "same.pt"
    run(same, max_steps=2)
    as_written_by_d83471e(same, "tests.train.helpers.LinearRegression")
    _, result = run(same, max_steps=4)
    assert result.steps == 4
