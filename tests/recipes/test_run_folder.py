"""The run folder and the checkpoint flags of ``hybridpgm train`` (hybridpgm/recipes/run_folder.py): ``--resume
auto``, the one command line that both starts a run and continues it after a requeue."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

#: tiny runs: a one-stage recipe, and a staged one whose first checkpoint is ``checkpoint-stage0.pt``
_TINY = {
    "crf": ["--epochs", "1", "--num-train", "20", "--num-test", "5", "--hidden", "4"],
    "dbn": ["--epochs", "1", "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2"],
}


@pytest.mark.parametrize("model", sorted(_TINY))
def test_resume_auto_starts_a_first_launch_and_the_same_command_continues_it(model, tmp_path, capsys):
    """Before, no command line both started and continued a run: ``--resume`` refused a first launch (exit 2)
    and a command without it refused the requeue (exit 2), so a SLURM ``--requeue`` job died at its first
    launch or its first requeue."""
    from hybridpgm.cli import main
    from hybridpgm.train import load_checkpoint

    out = tmp_path / "run"
    argv = ["train", model, *_TINY[model], "--no-progress", "--device", "cpu", "--out", str(out), "--resume", "auto"]
    assert main(argv) == 0, capsys.readouterr().err  # the first launch: no checkpoint yet, so it starts
    first = out / ("checkpoint-stage0.pt" if model == "dbn" else "checkpoint.pt")
    steps = load_checkpoint(out / "checkpoint.pt")["step"]
    assert first.is_file() and steps > 0
    capsys.readouterr()
    assert main(argv) == 0  # the requeue: the same command continues the checkpoint (here a finished one)
    err = capsys.readouterr().err
    assert "resuming" in err and f"at step {steps}" in err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == steps


def test_resume_alone_still_requires_a_checkpoint_and_names_resume_auto(tmp_path, capsys):
    """``--resume`` keeps its meaning (a checkpoint must exist); its error now names ``--resume auto``, as does
    the refusal of an existing checkpoint without ``--resume``."""
    from hybridpgm.cli import main

    argv = ["train", "crf", *_TINY["crf"], "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no checkpoint to resume from" in err and "--resume auto" in err
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "exists" in err and "--resume auto" in err


@pytest.mark.parametrize("extra", [["--resume", "auto", "--overwrite"], ["--resume", "always"]])
def test_resume_auto_excludes_overwrite_and_takes_no_other_value(extra, tmp_path, capsys):
    from hybridpgm.cli import main

    argv = ["train", "crf", *_TINY["crf"], "--no-progress", "--out", str(tmp_path / "run"), *extra]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("resume, require, expected", [
    (None, True, "never"), ("require", True, "require"), ("auto", True, "auto"), ("require", False, "auto"),
    ("auto", False, "auto"), (True, True, "require")])
def test_checkpoint_options_map_the_flag_to_fits_resume(resume, require, expected, tmp_path):
    from hybridpgm.recipes.run_folder import checkpoint_options

    args = SimpleNamespace(resume=resume, checkpoint_every=7, overwrite=False, override_hyperparameters=False)
    options, steps = checkpoint_options(args, tmp_path, require=require, config={})
    assert options["resume"] == expected and steps == 0 and options["checkpoint"] == tmp_path / "checkpoint.pt"
