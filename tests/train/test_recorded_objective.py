"""A format-1 checkpoint recording the objective as ``module.Class`` (hybridpgm/train/recorded_objective.py)."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train import load_checkpoint
from hybridpgm.train.recorded_objective import upgrade_objective_name
from tests.train.helpers import LinearRegression, regression_data


def run(ckpt, **kwargs):
    objective = LinearRegression()
    result = fit(objective, regression_data(), epochs=2, batch_size=16, checkpoint=ckpt, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.0), **kwargs)
    return objective, result


def as_written_by_d83471e(ckpt, objective):
    """Rewrite ``ckpt`` as the commits d83471e..c137faf^ wrote it (format 1, read and compared field by field with
    a checkpoint of 9c5327f): the objective with its module, no ``objective_settings`` nor parameter names, the
    history as plain lists, no tagged floats (none here)."""
    state = load_checkpoint(ckpt)
    state["format_version"] = 1
    state["config"]["objective"] = objective
    del state["config"]["objective_settings"]
    for record in state["config"]["optimizers"].values():
        del record["param_names"]
    torch.save(state, ckpt)


def test_a_development_checkpoint_recording_the_module_resumes_as_the_same_class(tmp_path):
    """Upgrade audit: a fit checkpoint (or ``hybridpgm train`` run folder) of 9c5327f was refused, "objective:
    checkpoint 'hybridpgm.infer.svi.SVIObjective', requested 'SVIObjective'", though nothing differed; it now
    resumes, and continues exactly as a checkpoint written now does."""
    written_now, old = tmp_path / "now.pt", tmp_path / "old.pt"
    run(written_now, max_steps=2)
    old.write_bytes(written_now.read_bytes())
    as_written_by_d83471e(old, "tests.train.helpers.LinearRegression")
    expected, _ = run(written_now, max_steps=6)
    resumed, result = run(old, max_steps=6)
    assert result.steps == 6 and load_checkpoint(old)["config"]["objective"] == "LinearRegression"
    for name, value in expected.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], value), name


def test_another_class_or_a_later_format_is_still_refused(tmp_path):
    ckpt = tmp_path / "r.pt"
    run(ckpt, max_steps=2)
    as_written_by_d83471e(ckpt, "tests.train.helpers.OtherRegression")
    with pytest.raises(CheckpointError, match=r"objective: checkpoint 'tests.train.helpers.OtherRegression', "
                                              r"requested 'LinearRegression'"):
        run(ckpt, max_steps=4)
    state = torch.load(ckpt, weights_only=True)
    state["format_version"] = 2  # no release of format 2 or later recorded the module: not this rule's file
    state["config"]["objective"] = "tests.train.helpers.LinearRegression"
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"objective: checkpoint 'tests.train.helpers.LinearRegression'"):
        run(ckpt, max_steps=4)
    assert load_checkpoint(ckpt)["step"] == 2  # untouched


@pytest.mark.parametrize("recorded, requested, version, expected", [
    ("hybridpgm.infer.svi.SVIObjective", "SVIObjective", 1, "SVIObjective"),
    ("__mp_main__.Outer.Obj", "Outer.Obj", 1, "Outer.Obj"),  # a nested class, written in a spawn child
    ("train.XSVIObjective", "SVIObjective", 1, "train.XSVIObjective"),  # a tail, not a class name's end
    ("SVIObjective", "SVIObjective", 1, "SVIObjective"),
    ("hybridpgm.infer.svi.SVIObjective", "SVIObjective", 4, "hybridpgm.infer.svi.SVIObjective"),
    ("hybridpgm.infer.svi.SVIObjective", None, 1, "hybridpgm.infer.svi.SVIObjective"),
    (None, "SVIObjective", 1, None),
    (3, "SVIObjective", 1, 3),  # a damaged record: left for check_resumable to name
])
def test_upgrade_objective_name(recorded, requested, version, expected):
    assert upgrade_objective_name(recorded, requested, version) == expected
