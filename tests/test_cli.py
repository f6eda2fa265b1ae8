import json

import pytest

from hybridpgm.cli import main
from hybridpgm.train import load_checkpoint


def test_list_names_models_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("vae", "iwae", "digits", "fashion-mnist"):
        assert name in out


@pytest.mark.parametrize("model", ["vae", "iwae"])
def test_train_writes_the_report(model, tmp_path, capsys):
    out = tmp_path / model
    argv = ["train", model, "--epochs", "1", "--batch-size", "256", "--latent-dim", "4", "--hidden", "16",
            "--eval-samples", "20", "--eval-size", "30", "--out", str(out), "--no-progress", "--particles", "2"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["test_size"] == 30 and metrics["model"] == model
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"] - 1.0
    for name in ("checkpoint.pt", "samples.png", "reconstructions.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5


def test_resume_continues_the_run(tmp_path):
    out = tmp_path / "run"
    base = ["train", "vae", "--batch-size", "256", "--latent-dim", "2", "--hidden", "8", "--eval-samples", "2",
            "--eval-size", "4", "--out", str(out), "--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 10
    assert len(load_checkpoint(out / "checkpoint.pt")["history"]["step"]) == 10


def test_errors_are_reported_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path))
    monkeypatch.setattr("hybridpgm.data.fashion_mnist.DEBIAN_PATH", tmp_path / "none")
    assert main(["train", "vae", "--dataset", "fashion-mnist", "--out", str(tmp_path / "o")]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
