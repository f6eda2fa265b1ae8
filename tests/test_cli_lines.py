"""The one-line reports of the ``hybridpgm`` command (hybridpgm/cli_lines.py): a Ctrl-C outside ``fit``."""

from __future__ import annotations

import signal

import pytest

import hybridpgm.recipes.common as common
from hybridpgm.cli import main

CRF = ["train", "crf", "--epochs", "1", "--num-train", "20", "--num-test", "5", "--hidden", "4", "--no-progress",
       "--device", "cpu"]


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt  # what a Ctrl-C raises before fit installs its handlers (the optimizer's import)


def _main(argv):
    """``main(argv)``, a KeyboardInterrupt escaping it a failure (not the end of the test session)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped main: a traceback, not one line")


def test_a_ctrl_c_before_fit_handles_signals_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """Before, a Ctrl-C while torch imported ``torch._dynamo`` for the first optimizer (seconds on a loaded
    machine) was a KeyboardInterrupt traceback through torch; now one line and 128 + SIGINT, and the output
    folder the run created is removed."""
    monkeypatch.setattr(common, "fit", _ctrl_c)
    out = tmp_path / "new" / "run"
    assert _main([*CRF, "--out", str(out)]) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert err.splitlines() == ["hybridpgm: interrupted by SIGINT before training started; nothing was saved"]
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("flag, again", [
    (["--resume"], "run the same command to continue"),
    (["--resume", "auto"], "run the same command to continue"),
    (["--overwrite"], "run the command with --resume instead of --overwrite to continue it, or the same command to "
                      "start afresh")])
def test_a_ctrl_c_outside_fit_with_a_checkpoint_names_it_and_how_to_continue(flag, again, tmp_path, monkeypatch,
                                                                             capsys):
    out = tmp_path / "run"
    assert main([*CRF, "--out", str(out)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(common, "fit", _ctrl_c)
    assert _main([*CRF, "--out", str(out), *flag]) == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(out) in err[0] and "is kept" in err[0] and err[0].endswith(again)
    assert (out / "checkpoint.pt").is_file()


def test_a_ctrl_c_outside_train_is_one_line(tmp_path, monkeypatch, capsys):
    import hybridpgm.cli as cli

    monkeypatch.setattr(cli, "_after_training", _ctrl_c)
    assert _main(["evaluate", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines() == ["hybridpgm: interrupted by SIGINT"]
