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
    assert saved["particles"] == metrics["particles"] == 1  # the one sample NVIL draws (was: --particles' 5)


def _status(argv):
    """``main(argv)``'s exit status, with argparse's exits turned into statuses."""
    from hybridpgm.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("objective, particles, match", [
    ("vimco", "1", "--particles 1 with --objective vimco: VIMCO needs num_particles >= 2"),
    ("nvil", "3", "--particles applies to --objective rws and vimco; nvil draws one sample"),
    ("wake-sleep", "5", "--particles applies to --objective rws and vimco; wake-sleep draws one sample"),
])
def test_particles_an_objective_would_not_use_is_refused(objective, particles, match, tmp_path, capsys):
    """Found by an audit: ``--objective vimco --particles 1`` trained K=2 (``max(k, 2)``) and nvil ignored
    --particles, while metrics.json recorded the value given.  Now one line and exit 2, before anything runs."""
    out = tmp_path / "run"
    argv = ["train", "sbn", "--objective", objective, "--particles", particles, "--hidden", "4", "--epochs", "1",
            "--eval-samples", "2", "--eval-size", "4", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert _status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hybridpgm: error:") and match in err, err
    assert not out.exists()


def test_particles_default_and_given_for_the_objectives_that_take_them():
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser, "sbn")
    for argv, k in ((["--objective", "rws"], 5), (["--objective", "vimco", "--particles", "2"], 2),
                    (["--objective", "nvil"], 1), (["--objective", "wake-sleep"], 1)):
        assert recipe._particles(parser.parse_args(argv)) == k


@pytest.mark.parametrize("objective, players, meaning", [
    ("rws", ["rws"], "-L_3 (negative importance-weighted bound), nats per example"),
    ("wake-sleep", ["wake", "sleep"], "-ELBO, nats per example"),
])
def test_final_train_loss_and_loss_curves_say_what_each_player_records(objective, players, meaning, tmp_path,
                                                                       monkeypatch):
    """Found by an audit: ``final_train_loss`` had one unit, "per-example loss minimized by each player", while
    rws recorded theta + phi (14 nats above -log p, against vimco's -L_K) and loss.png called no curve by what it
    is.  Now the "rws" player records -L_K, wake-sleep's "wake" player -ELBO, and each player's unit and curve
    label say so; the sleep player's says it is no bound."""
    labels = {}
    real = recipe.plot_loss_curves
    monkeypatch.setattr(recipe, "plot_loss_curves", lambda *a, **k: (labels.update(k["labels"]), real(*a, **k))[1])
    parser = argparse.ArgumentParser()
    recipe.add_arguments(parser, "sbn")
    extra = ["--particles", "3"] if objective == "rws" else []
    args = parser.parse_args(["--objective", objective, *extra, "--hidden", "8", "--epochs", "1", "--batch-size",
                              "256", "--eval-samples", "4", "--eval-size", "16", "--device", "cpu", "--no-progress",
                              "--out", str(tmp_path)])
    recipe.run(args)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    units = saved["units"]["final_train_loss"]
    assert sorted(saved["final_train_loss"]) == sorted(units) == sorted(labels) == sorted(players)
    assert units[players[0]] == f"{meaning} (lower is better)"
    assert labels[players[0]] == f"{players[0]} loss = {meaning}"
    if objective == "wake-sleep":
        assert "no bound" in units["sleep"] and "no bound" in labels["sleep"]
