"""The units of a DBN's and a DBM's metrics.json name that model's top stage (hybridpgm/recipes/deep_energy.py).

Before, both recipes shared one table of units: a DBN run's ``units.steps`` read "optimizer steps of the top stage
(the DBM's joint training)", though a DBN has no joint training; its top stage is its last greedy RBM."""

import json

import pytest

from hybridpgm.cli import main

#: the smallest runs of each recipe (one epoch, one batch of the 64-pixel digits)
TINY = ["--epochs", "1", "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2", "--no-progress",
        "--device", "cpu"]
DBM = ["--chains", "10", "--ais-chains", "10", "--ais-steps", "20"]


@pytest.mark.parametrize("model, stage", [("dbn", "the DBN's last greedy RBM"), ("dbm", "the DBM's joint training")])
def test_the_top_stage_is_named_for_the_model(model, stage, tmp_path):
    out = tmp_path / model
    assert main(["train", model, *TINY, *(DBM if model == "dbm" else []), "--out", str(out)]) == 0
    units = json.loads((out / "metrics.json").read_text())["units"]
    assert units["steps"] == f"optimizer steps of the top stage ({stage})"
    assert units["top_stage_train_wall_time_s"] == f"seconds, the top stage ({stage}) alone"
    if model == "dbn":  # no unit of a DBN speaks of a joint training
        assert [figure for figure, unit in units.items() if "joint" in str(unit)] == []
