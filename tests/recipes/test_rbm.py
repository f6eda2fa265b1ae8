import json
import math

import pytest

from hybridpgm.cli import main
from hybridpgm.energy import RBM
from hybridpgm.infer import PersistentCD
from hybridpgm.train import load_checkpoint
from tests.recipes.fashion_fixture import tiny_fashion


@pytest.mark.parametrize("persistent", [False, True])
def test_rbm_recipe_reports_an_ais_estimate_close_to_exact(persistent, tmp_path):
    out = tmp_path / "rbm"
    argv = ["train", "rbm", "--epochs", "2", "--hidden", "8", "--ais-chains", "50", "--ais-steps", "500",
            "--eval-every", "5", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv + (["--persistent", "--chains", "20"] if persistent else [])) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["objective"] == ("PCD-1" if persistent else "CD-1") and metrics["steps"] == 26
    assert set(metrics["validation"]) == {"reconstruction_error", "pseudo_log_likelihood"}
    for name in ("checkpoint.pt", "loss.png", "samples.png", "ais_weights.png"):
        assert (out / name).stat().st_size > 0
    # the trained model from the checkpoint: its exact log Z (8 hidden units) against the reported AIS value
    rbm = RBM(64, 8)
    objective = PersistentCD(rbm, 1, 20) if persistent else rbm
    state = load_checkpoint(out / "checkpoint.pt")["module"]
    if persistent:
        objective.load_state_dict(state)
    else:
        rbm.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    exact = float(rbm.log_partition("exact"))
    assert abs(metrics["log_z"] - exact) < max(0.05, 4 * metrics["log_z_stderr"])
    # two AIS starts, their spread folded into the error, and a verdict on reliability
    assert set(metrics["log_z_starts"]) == {"data", "model"} and isinstance(metrics["log_z_reliable"], bool)
    assert metrics["log_z"] == max(start["log_z"] for start in metrics["log_z_starts"].values())
    assert math.isfinite(metrics["test_log_likelihood"]) and metrics["test_log_likelihood"] < 0


def test_chains_without_persistent_is_refused_and_recorded_only_when_used(tmp_path, capsys):
    """Before, ``--chains N`` without ``--persistent`` was accepted and ignored (CD-k keeps no chains)."""
    out = tmp_path / "rbm"
    argv = ["train", "rbm", "--epochs", "1", "--batch-size", "256", "--hidden", "8", "--ais-chains", "10",
            "--ais-steps", "20", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv + ["--chains", "20"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--chains" in err and "--persistent" in err and not out.exists()
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "chains" not in metrics and metrics["objective"] == "CD-1" and metrics["precision"] == "fp32"
    assert main(argv + ["--persistent", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["chains"] == 100


def test_rbm_trains_on_a_small_fashion_copy_without_a_validation_split(tmp_path, capsys):
    """Before, a Fashion-MNIST copy of <= 10,000 training images (all training data, an empty validation split)
    trained, then failed with exit 2 at the validation monitor ("... 'v' is an empty batch"), leaving no
    model.pt."""
    data = tiny_fashion(tmp_path / "fm")
    out = tmp_path / "rbm"
    argv = ["train", "rbm", "--dataset", "fashion-mnist", "--data-root", str(data), "--epochs", "1",
            "--batch-size", "10", "--eval-every", "1", "--hidden", "4", "--ais-chains", "4", "--ais-steps", "20",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["validation"] == {}  # nothing to monitor
    assert (out / "model.pt").stat().st_size > 0 and math.isfinite(metrics["test_log_likelihood"])
    assert main(["evaluate", str(out)]) == 0
    assert math.isfinite(json.loads((out / "evaluation.json").read_text())["test_log_likelihood"])
