"""``benchmarks/recipes_on_device.py``: each recipe trains, evaluates, samples and reloads, and a recipe that
fails is named in the JSON and in the error the GPU suite records."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import recipes_on_device  # noqa: E402


def test_a_recipe_runs_every_step_and_one_without_sample_skips_it(tmp_path):
    out = tmp_path / "recipes.json"
    recipes_on_device.main(recipes_on_device.parse_args(["--device", "cpu", "--only", "crf", "--out", str(out)]))
    record = json.loads(out.read_text())
    assert record["failed"] == [] and record["device"] == "cpu"
    row = record["results"]["crf"]
    steps = {k: v["rc"] for k, v in row.items() if isinstance(v, dict)}
    assert steps == {"train": 0, "resume": 0, "evaluate": 0, "load": 0}
    assert row["load"]["type"] == "CRFTagger" and row["load"]["finite"] and row["metrics_finite"]


def test_a_failing_recipe_is_named_and_the_others_still_run(tmp_path, monkeypatch):
    crf = next(r for r in recipes_on_device.RECIPES if r[0] == "crf")
    monkeypatch.setattr(recipes_on_device, "RECIPES", [("broken", "vae", ["--epochs", "0"]), crf])
    out = tmp_path / "recipes.json"
    with pytest.raises(RuntimeError, match=r"failed on cpu: \['broken'\]"):
        recipes_on_device.main(recipes_on_device.parse_args(["--device", "cpu", "--out", str(out)]))
    record = json.loads(out.read_text())
    assert record["failed"] == ["broken"]
    assert record["results"]["broken"]["train"]["rc"] == 2
    assert "--epochs" in record["results"]["broken"]["train"]["stderr_tail"]
    assert record["results"]["crf"]["load"]["rc"] == 0


def test_a_model_that_reloads_with_non_finite_weights_fails(tmp_path, monkeypatch):
    """A run whose model file comes back with NaN weights is named as failed, not passed."""
    import torch

    import hybridpgm

    def nan_load(path, map_location=None):  # stands in for a model file whose weights came back NaN
        m = torch.nn.Linear(2, 2)
        with torch.no_grad():
            m.weight.fill_(float("nan"))
        return m

    monkeypatch.setattr(hybridpgm, "load", nan_load)
    out = tmp_path / "recipes.json"
    with pytest.raises(RuntimeError, match=r"failed on cpu: \['vae'\]"):
        recipes_on_device.main(recipes_on_device.parse_args(["--device", "cpu", "--only", "vae", "--out", str(out)]))
    record = json.loads(out.read_text())
    assert record["failed"] == ["vae"]
    assert record["results"]["vae"]["load"] == {**record["results"]["vae"]["load"], "rc": 0, "finite": False}
