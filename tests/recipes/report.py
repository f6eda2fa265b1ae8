"""Shared checks of the run-folder layout every recipe writes."""

import json

import hybridpgm
from hybridpgm.cli import main

LAYOUT = ("metrics.json", "model.pt", "loss.png")


def train_and_check(model, out, args, plots=(), checkpoint=True):
    """Run ``hybridpgm train model ... --out out``; check the common report; return (metrics, loaded model)."""
    assert main(["train", model, *args, "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    for name in LAYOUT + tuple(plots) + (("checkpoint.pt",) if checkpoint else ()):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["command"].startswith(f"hybridpgm train {model} ")
    assert set(metrics["versions"]) == {"hybridpgm", "pyro", "torch", "gpytorch"}
    assert metrics["train_examples_per_s"] > 0 and metrics["train_wall_time_s"] > 0
    assert all(key in metrics for key in metrics["units"])
    return metrics, hybridpgm.load(out / "model.pt")


def evaluate(out, *extra):
    assert main(["evaluate", str(out), *extra]) == 0
    return json.loads((out / "evaluation.json").read_text())
