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
