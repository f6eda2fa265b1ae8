import argparse
import json

import pytest

import hybridpgm  # noqa: F401
from hybridpgm.recipes import sbn as recipe
from tests.generative.sbn_brute_force import single_thread  # noqa: F401


@pytest.mark.parametrize("objective", ["nvil"])
def test_sbn_recipe_trains_and_writes_metrics(objective, tmp_path):
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser, "sbn")
    args = parser.parse_args(["--objective", objective, "--hidden", "8", "--epochs", "1", "--batch-size", "256",
                              "--eval-samples", "4", "--eval-size", "16", "--device", "cpu", "--no-progress",
                              "--out", str(tmp_path)])
    metrics = recipe.run(args)
    assert metrics["objective"] == objective and metrics["test_size"] == 16
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"])
    assert (tmp_path / "samples.png").exists() and (tmp_path / "loss.png").exists()
