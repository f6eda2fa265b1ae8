import json
import sys
import warnings

import pytest
import torch

import hybridpgm
from hybridpgm.cli import main
from hybridpgm.energy import DBM, DBN
from hybridpgm.errors import TrainingWarning
from hybridpgm.train import load_checkpoint
from tests.recipes.report import evaluate, train_and_check
from tests.train.helpers import TermAt


@pytest.mark.parametrize("model", ["dbn", "dbm"])
def test_dbn_dbm_recipes_write_the_report(model, tmp_path):
    args = ["--epochs", "1", "--batch-size", "256", "--hidden", "8", "6", "--gibbs-steps", "5"]
    if model == "dbm":
        args += ["--chains", "10", "--ais-chains", "10", "--ais-steps", "50"]
    metrics, loaded = train_and_check(model, tmp_path, args, plots=("samples.png",))
    assert isinstance(loaded, DBN if model == "dbn" else DBM) and loaded.sizes == [64, 8, 6]
    if model == "dbn":
        # the unrolled autoencoder of the loaded model reconstructs exactly as the trained one did
        assert evaluate(tmp_path)["test_reconstruction_loss"] == pytest.approx(metrics["test_reconstruction_loss"])
        assert 0 < metrics["test_reconstruction_loss"] < 64 * 0.7
    else:
        assert metrics["log_z_stderr"] >= 0 and metrics["test_log_likelihood_bound"] < 0


DEEP = ["--epochs", "2", "--batch-size", "256", "--gibbs-steps", "5", "--no-progress", "--device", "cpu",
        "--seed", "3"]
DBM_ARGS = ["--chains", "10", "--ais-chains", "10", "--ais-steps", "50"]


def _outcome(out):
    metrics = json.loads((out / "metrics.json").read_text())
    score = metrics.get("test_reconstruction_loss", metrics.get("log_z"))
    return score, hybridpgm.load(out / "model.pt").state_dict()


@pytest.mark.parametrize("model,hidden,stop_at", [("dbn", ["8", "6", "4"], 8), ("dbm", ["8", "6"], 8)])
def test_a_run_preempted_in_a_lower_stage_resumes_to_the_uninterrupted_result(model, hidden, stop_at, tmp_path,
                                                                             monkeypatch, capsys):
    """SIGTERM in the second greedy stage: stage 0's checkpoint is finished, stage 1's
    holds step ``stop_at``, the top stage has none; --resume gives the same model."""
    import hybridpgm.train.trainer as trainer

    args = ["train", model, *DEEP, "--hidden", *hidden, *(DBM_ARGS if model == "dbm" else [])]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    whole = _outcome(tmp_path / "whole")
    out = tmp_path / "cut"
    calls, fit = [], trainer.fit

    def second_stage_interrupted(*a, **kw):
        calls.append(kw.get("checkpoint"))
        if len(calls) == 2:
            kw = {**kw, "callbacks": [*kw.get("callbacks", ()), TermAt(stop_at)]}
        return fit(*a, **kw)

    monkeypatch.setattr(trainer, "fit", second_stage_interrupted)  # the greedy stages (GreedyStages imports it)
    assert main(args + ["--out", str(out)]) == 143
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint-stage1.pt")["step"] == stop_at
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(trainer, "fit", fit)
    assert main(args + ["--out", str(out), "--resume"]) == 0
    score, state = _outcome(out)
    assert score == whole[0]
    assert state.keys() == whole[1].keys() and all(torch.equal(state[k], whole[1][k]) for k in state)


def test_resume_of_a_deep_model_needs_its_first_stage_checkpoint(tmp_path, capsys):
    args = ["train", "dbn", *DEEP, "--hidden", "8", "6", "--out", str(tmp_path), "--resume"]
    assert main(args) == 2
    assert "checkpoint-stage0.pt" in capsys.readouterr().err


def test_greedy_stages_train_with_the_accumulate_and_precision_they_are_given(tmp_path):
    """Before, only the top stage got ``--accumulate`` and ``--precision``; the greedy stages trained with
    accumulate=1 in fp32."""
    args = ["train", "dbn", "--epochs", "1", "--hidden", "8", "4", "--gibbs-steps", "2", "--batch-size", "256",
            "--accumulate", "2", "--precision", "bf16", "--no-progress", "--device", "cpu", "--out", str(tmp_path)]
    assert main(args) == 0
    for name in ("checkpoint-stage0.pt", "checkpoint.pt"):
        config = load_checkpoint(tmp_path / name)["config"]
        assert (config["accumulate"], config["precision"]) == (2, "bf16"), name


def test_an_existing_checkpoint_of_any_stage_is_refused_before_training(tmp_path, capsys):
    """Before, ``dbn --hidden 8`` then ``dbn --hidden 8 6`` in the same folder looked only for
    ``checkpoint-stage0.pt``: it trained the new first stage, then refused at the top one."""
    assert main(["train", "dbn", *DEEP, "--hidden", "8", "--out", str(tmp_path)]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["train", "dbn", *DEEP, "--hidden", "8", "6", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "checkpoint.pt" in err and "--resume" in err and "--overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stage trained
    (tmp_path / "checkpoint.pt").unlink()
    (tmp_path / "checkpoint-stage1.pt").write_bytes(b"")  # a later stage of another run
    assert main(["train", "dbn", *DEEP, "--hidden", "8", "6", "--out", str(tmp_path)]) == 2
    assert "checkpoint-stage1.pt" in capsys.readouterr().err and not (tmp_path / "checkpoint-stage0.pt").exists()


@pytest.mark.parametrize("model", ["dbn", "dbm"])
def test_train_wall_time_counts_every_stage(model, tmp_path, monkeypatch):
    """``train_wall_time_s`` is the whole training: every greedy stage (DBN) or the pretraining (DBM) and the
    top stage.  Before, it was the top stage's alone (0.51 s of 5.00 s for a DBN of four stages); that figure
    is ``top_stage_train_wall_time_s`` now, which ``train_examples_per_s`` divides by."""
    import time

    import hybridpgm.recipes.common as common
    import hybridpgm.train.trainer as trainer

    times = []

    def timed(real):
        def fit(*args, **kwargs):
            started = time.perf_counter()
            result = real(*args, **kwargs)
            times.append(time.perf_counter() - started)
            return result
        return fit

    monkeypatch.setattr(trainer, "fit", timed(trainer.fit))  # the greedy stages (GreedyStages imports it)
    monkeypatch.setattr(common, "fit", timed(common.fit))  # the top stage (common.train)
    hidden = ["8", "6", "4"] if model == "dbn" else ["8", "6"]
    assert main(["train", model, *DEEP, "--hidden", *hidden, *(DBM_ARGS if model == "dbm" else []),
                 "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(times) == 3  # two lower stages and the top one
    assert metrics["train_wall_time_s"] >= sum(times)
    assert metrics["top_stage_train_wall_time_s"] >= times[-1]
    assert metrics["train_wall_time_s"] > metrics["top_stage_train_wall_time_s"]
    assert "top_stage_train_wall_time_s" in metrics["units"]["train_examples_per_s"]


@pytest.mark.parametrize("model,resumed", [("dbn", "checkpoint.pt"), ("dbm", "checkpoint-stage1.pt")])
def test_a_resume_that_trains_a_lower_stage_further_warns_in_one_line_naming_overwrite(model, resumed, tmp_path,
                                                                                       capsys, monkeypatch):
    """Found by an audit of warnings: ``train dbn --resume`` with more epochs trained layer 0 further and resumed
    the top RBM's checkpoint, a run on layer 0's old features, silently (the recipe looped over fit itself, not
    GreedyStages), and ``train dbm --resume`` warned at ``<frozen runpy>:88`` advising ``overwrite=True``.  Run as
    the command (``main()`` reading ``sys.argv``, as the console script and ``python -m hybridpgm`` do)."""
    args = ["train", model, "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2", "--no-progress",
            "--device", "cpu", "--out", str(tmp_path), *(DBM_ARGS if model == "dbm" else [])]

    def command(*more):
        monkeypatch.setattr(sys, "argv", ["hybridpgm", *args, *more])
        shown = warnings.showwarning
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            code = main()
            assert warnings.showwarning is shown  # the one-line display is the command's own, put back after
        return code

    assert command("--epochs", "1") == 0
    assert "warning" not in capsys.readouterr().err
    assert command("--epochs", "2", "--resume") == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert len(warned) == 1
    assert warned[0].startswith(f"hybridpgm: warning: train {model} --resume: layer 1 resumes its checkpoint "
                                f"{str(tmp_path / resumed)!r} (step 3), a run on the features of layer 0 as they were "
                                "before this run trained that layer further")
    assert warned[0].endswith("or train with --overwrite instead of --resume (every stage afresh)")
    assert command("--epochs", "2", "--resume") == 0  # every stage finished: nothing trains, nothing said
    assert "warning" not in capsys.readouterr().err.lower()


def test_called_with_arguments_main_leaves_the_warnings_to_the_caller_and_a_warning_made_an_error_is_one_line(
        tmp_path, capsys):
    """Review: ``main([...])`` replaced ``warnings.showwarning`` for its run, so ``pytest.warns`` (or a notebook's
    ``catch_warnings(record=True)``) no longer recorded its TrainingWarnings, and the filters libraries added during
    the run were dropped; ``-W error`` turned the warning into a traceback with exit status 1."""
    args = ["train", "dbm", "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2", "--no-progress",
            "--device", "cpu", "--out", str(tmp_path), *DBM_ARGS]
    assert main(args + ["--epochs", "1"]) == 0
    with pytest.warns(TrainingWarning, match="layer 1 resumes its checkpoint"):
        assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert "hybridpgm: warning" not in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingWarning)
        assert main(args + ["--epochs", "3", "--resume"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line or "Traceback" in line]
    assert len(err) == 1 and err[0].startswith("hybridpgm: error: train dbm --resume: layer 1 resumes its checkpoint")
    assert err[0].endswith("(a warning, made an error by the warning filters)")
