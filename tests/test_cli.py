import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hybridpgm
from hybridpgm.serialization import versions
from hybridpgm.cli import main
from hybridpgm.train import load_checkpoint

TINY_VAE = ["--batch-size", "256", "--latent-dim", "2", "--hidden", "8", "--eval-samples", "2", "--eval-size", "4",
            "--no-progress"]


def _run(argv):
    """``main(argv)``'s exit status, with argparse's exits turned into statuses."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_list_names_models_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("vae", "iwae", "digits", "fashion-mnist"):
        assert name in out


def test_version_names_every_library(capsys):
    assert _run(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    v = versions()
    assert line == f"hybridpgm {v['hybridpgm']} (Pyro {v['pyro']}, torch {v['torch']}, GPyTorch {v['gpytorch']})"


@pytest.mark.parametrize("model,extra", [("vae", []), ("iwae", ["--particles", "2"])])
def test_train_writes_the_report(model, extra, tmp_path, capsys):
    out = tmp_path / model
    argv = ["train", model, "--epochs", "1", "--batch-size", "256", "--latent-dim", "4", "--hidden", "16",
            "--eval-samples", "20", "--eval-size", "30", "--out", str(out), "--no-progress", *extra]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["test_size"] == 30 and metrics["model"] == model
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"] - 1.0
    for name in ("checkpoint.pt", "model.pt", "samples.png", "reconstructions.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    # honest figures: units, versions, the command, throughput = examples / wall time, signs
    assert metrics["units"]["test_log_likelihood"].startswith("nats per example")
    assert "-ELBO" in metrics["units"]["final_train_loss"]
    assert metrics["final_train_loss"] > 0 > metrics["test_elbo"]
    assert metrics["versions"] == versions()
    assert metrics["command"] == "hybridpgm " + " ".join(argv)
    train_size = hybridpgm.data.load_dataset("digits").train.x.shape[0]
    assert metrics["train_examples_per_s"] == pytest.approx(train_size / metrics["train_wall_time_s"])
    assert metrics["baseline_test_log_likelihood"] < 0


def test_resume_continues_the_run_and_evaluate_sample_read_it(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "vae", *TINY_VAE, "--out", str(out)]
    assert main(base + ["--epochs", "1"]) == 0
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 10
    assert len(load_checkpoint(out / "checkpoint.pt")["history"]["step"]) == 10
    assert main(base + ["--epochs", "1", "--overwrite"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["test_size"] == 4 and report["test_log_likelihood"] < 0
    assert main(["sample", str(out), "--num-samples", "9"]) == 0
    assert (out / "samples-seed0.png").stat().st_size > 0
    vae = hybridpgm.load(out / "model.pt")
    assert (vae.x_dim, vae.z_dim) == (64, 2)
    # an --output that cannot be written is one line and exit 2 (before, a traceback and exit 1; a folder
    # given to sample made matplotlib write '<folder>.png' while the report named the folder)
    (tmp_path / "folder").mkdir()
    for command, output, word in [("evaluate", tmp_path / "none" / "e.json", "does not exist"),
                                  ("evaluate", tmp_path / "folder", "is a folder"),
                                  ("sample", tmp_path / "none" / "s.png", "does not exist"),
                                  ("sample", tmp_path / "folder", "is a folder"),
                                  ("sample", tmp_path / "samples", "has no extension")]:
        capsys.readouterr()
        assert main([command, str(out), "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and word in err and str(output) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "run"]


@pytest.mark.parametrize("change,word", [(["--latent-dim", "3"], "another model"), (["--lr", "0.01"], "lr")],
                         ids=["changed-model", "changed-lr"])
def test_resume_refuses_a_changed_model_or_learning_rate(change, word, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "vae", *TINY_VAE, "--out", str(out), "--epochs", "1"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base[:-2] + ["--epochs", "2", "--resume", *change]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("hybridpgm: error: ") and word in err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5  # untouched
    if word == "lr":
        assert main(base[:-2] + ["--epochs", "2", "--resume", *change, "--override-hyperparameters"]) == 0
        assert load_checkpoint(out / "checkpoint.pt")["step"] == 10


def _file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("x")
    return str(path)


def _checkpointed(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    torch.save({"step": 1}, out / "checkpoint.pt")
    return str(out)


#: (id, argv builder, a word the message must hold)
BAD = [
    ("out-is-a-file", lambda t: ["train", "vae", "--out", _file(t)], "existing file"),
    ("out-under-a-file", lambda t: ["train", "vae", "--out", _file(t) + "/run"], "which is a file"),
    ("out-unwritable", lambda t: ["train", "vae", "--out", "/sys/hybridpgm-test/run"], "cannot be created"),
    ("lr-negative", lambda t: ["train", "vae", "--lr", "-1"], "--lr"),
    ("lr-nan", lambda t: ["train", "vae", "--lr", "nan"], "--lr"),
    ("rbm-lr-zero", lambda t: ["train", "rbm", "--lr", "0"], "--lr"),
    ("eval-size-zero", lambda t: ["train", "vae", "--eval-size", "0"], "--eval-size"),
    ("eval-samples-zero", lambda t: ["train", "vae", "--eval-samples", "0"], "--eval-samples"),
    ("sbn-eval-size-zero", lambda t: ["train", "sbn", "--eval-size", "0"], "--eval-size"),
    ("epochs-zero", lambda t: ["train", "vae", "--epochs", "0"], "--epochs"),
    ("batch-size-text", lambda t: ["train", "vae", "--batch-size", "many"], "--batch-size"),
    ("accumulate-zero", lambda t: ["train", "vae", "--accumulate", "0"], "--accumulate"),
    ("hidden-negative", lambda t: ["train", "sbn", "--hidden", "8", "-3"], "--hidden"),
    ("data-root-missing", lambda t: ["train", "vae", "--data-root", "/nonexistent"], "/nonexistent"),
    ("device-unknown", lambda t: ["train", "vae", "--device", "tpu"], "unknown device 'tpu'; use 'auto'"),
    ("device-cuda-missing", lambda t: ["train", "vae", "--device", "cuda:99"], "cuda:99"),
    ("resume-nothing", lambda t: ["train", "vae", "--resume", "--out", str(t / "fresh")], "no checkpoint"),
    ("checkpoint-exists", lambda t: ["train", "vae", "--out", _checkpointed(t)], "--overwrite"),
    ("resume-and-overwrite", lambda t: ["train", "vae", "--resume", "--overwrite"], "not allowed"),
    ("unknown-model", lambda t: ["train", "nope"], "nope"),
    ("unknown-dataset", lambda t: ["train", "vae", "--dataset", "nope"], "nope"),
    ("evaluate-no-run", lambda t: ["evaluate", str(t / "missing")], "does not exist"),
    ("sample-no-model", lambda t: ["sample", str(t)], "no model file"),
]


def test_a_missing_dataset_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path))
    monkeypatch.setattr("hybridpgm.data.fashion_mnist.DEBIAN_PATH", tmp_path / "none")
    assert main(["train", "vae", "--dataset", "fashion-mnist", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and len(err.splitlines()) == 1


def test_the_command_prints_no_traceback_as_a_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "hybridpgm", "train", "vae", "--eval-size", "0"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("model", sorted(__import__("hybridpgm.recipes", fromlist=["RECIPES"]).RECIPES))
def test_every_recipe_has_help_with_its_real_optimizer_defaults(model, capsys):
    assert _run(["train", model, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume" in text and "--overwrite" in text and "--data-root" in text
    if model == "rbm":
        assert "SGD (with --momentum) learning rate (default 0.05)" in text
    if model == "vae":
        assert "Adam learning rate (default 0.003)" in text


def _empty_folder(tmp_path):
    path = tmp_path / "empty-root"
    path.mkdir()
    return str(path)


#: (id, argv builder, a fragment the one-line message must hold)
BAD_INPUTS = [
    ("data-root-for-bundled-digits", lambda t: ["train", "vae", "--data-root", str(t)],
     "--dataset digits reads no folder"),
    ("data-root-for-crf", lambda t: ["train", "crf", "--data-root", str(t)], "--dataset hmm reads no folder"),
    ("data-root-empty-for-fashion", lambda t: ["train", "vae", "--dataset", "fashion-mnist", "--data-root",
                                               _empty_folder(t), "--out", str(t / "o")], "empty-root' lacks"),
    ("out-empty", lambda t: ["train", "vae", "--out", ""], "--out '' is empty"),
    ("evaluate-a-file", lambda t: ["evaluate", _file(t)], "is a file, not a folder"),
    # before, --seed 2**64 ended in torch.Generator.manual_seed's ValueError traceback
    ("seed-2**64", lambda t: ["train", "vae", "--seed", str(2**64)], "argument --seed: expected a seed, an integer "
                                                                     "in [0, 2**32 - 1], got '18446744073709551616'"),
    ("seed-2**32", lambda t: ["train", "rbm", "--seed", str(2**32)], "argument --seed"),
    ("seed-negative", lambda t: ["train", "vae", "--seed", "-1"], "argument --seed"),
    ("seed-text", lambda t: ["train", "vae", "--seed", "x"], "argument --seed"),
    ("evaluate-seed-2**64", lambda t: ["evaluate", str(t), "--seed", str(2**64)], "argument --seed"),
    ("sample-seed-2**64", lambda t: ["sample", str(t), "--seed", str(2**64)], "argument --seed"),
]


@pytest.mark.parametrize("build,word", [b[1:] for b in BAD + BAD_INPUTS], ids=[b[0] for b in BAD + BAD_INPUTS])
def test_bad_arguments_exit_2_with_one_line_before_training(build, word, tmp_path, capsys, monkeypatch):
    if "cuda" in word and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 GPUs")
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    if "/sys/hybridpgm-test/run" in argv and not Path("/sys").is_dir():
        pytest.skip("no /sys here")

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("hybridpgm.recipes.common.fit", no_training)
    capsys.readouterr()
    assert _run(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hybridpgm: error: "), captured.err
    assert word in lines[0] and "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "runs").exists()


ALLOCATOR_ERRORS = [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 25599999999744 bytes. Error code 12 (Cannot allocate memory)"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 93.13 GiB. GPU 0 has a total capacity of 79 GiB\n"
                           "Of the allocated memory ..."),
    MemoryError("Unable to allocate 745. GiB for an array with shape (99999999999, 1000) and data type float64"),
]


@pytest.mark.parametrize("error", ALLOCATOR_ERRORS, ids=["cpu-allocator", "cuda", "numpy"])
@pytest.mark.parametrize("command", ["train", "sample"])
def test_a_size_too_large_to_allocate_is_one_line(error, command, tmp_path, capsys, monkeypatch):
    """Before, ``--hidden 99999999999`` or ``--num-samples 99999999999`` ended in the allocator's traceback.
    The failure is simulated: a real allocation that size may succeed lazily (and then exhaust the machine)
    where memory is overcommitted."""
    def allocate(*args, **kwargs):
        raise error

    if command == "train":
        monkeypatch.setattr("hybridpgm.recipes.common.fit", allocate)
        argv = ["train", "vae", "--out", str(tmp_path / "o"), *TINY_VAE]  # tiny: fit raises the error
    else:
        monkeypatch.setattr("hybridpgm.cli._after_training", allocate)
        argv = ["sample", str(tmp_path), "--num-samples", "99999999999"]
    capsys.readouterr()
    assert _run(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    first = str(error).splitlines()[0]
    assert len(lines) == 1 and lines[0].startswith(f"hybridpgm: error: out of memory: {first}"), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_another_runtime_error_is_not_turned_into_a_line(tmp_path, monkeypatch):
    """Only an allocation failure is reported in one line; any other RuntimeError is a bug, shown in full."""
    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)")

    monkeypatch.setattr("hybridpgm.recipes.common.fit", broken)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        main(["train", "vae", "--out", str(tmp_path / "o"), "--no-progress"])


def test_a_run_refused_before_writing_leaves_no_folder_behind(tmp_path, capsys):
    """Before, a run that failed a check of fit's (accumulate larger than the batch) left the empty --out
    folders it had created; one that wrote anything keeps its folder."""
    out = tmp_path / "new" / "run"
    assert main(["train", "vae", *TINY_VAE, "--epochs", "1", "--accumulate", "100", "--batch-size", "8",
                 "--out", str(out)]) == 2
    assert "accumulate" in capsys.readouterr().err and not (tmp_path / "new").exists()
    out.mkdir(parents=True)
    assert main(["train", "vae", *TINY_VAE, "--epochs", "1", "--accumulate", "100", "--batch-size", "8",
                 "--out", str(out)]) == 2
    assert out.is_dir()  # it was there before the run


def test_evaluate_refuses_num_samples_which_only_sample_takes(tmp_path, capsys):
    """Before, ``evaluate RUN --num-samples K`` was accepted and read by no recipe (each evaluates with the
    counts its run recorded, ``--eval-samples`` ...)."""
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(tmp_path), "--num-samples", "5"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "--num-samples" in err
    from hybridpgm.cli import build_parser

    assert build_parser().parse_args(["sample", str(tmp_path), "--num-samples", "5"]).num_samples == 5


def test_evaluate_finds_the_data_from_any_folder_and_data_root_points_it_elsewhere(tmp_path, capsys, monkeypatch):
    """Before, a run recorded ``--data-root`` as typed: a relative folder was looked up again from the working
    directory of ``evaluate``, which then could not find the data, and ``evaluate`` had no ``--data-root``."""
    from hybridpgm.serialization import load_model
    from tests.recipes.fashion_fixture import tiny_fashion

    (tmp_path / "elsewhere").mkdir()
    tiny_fashion(tmp_path / "work" / "fm")
    monkeypatch.chdir(tmp_path / "work")
    run = tmp_path / "run"
    assert main(["train", "vae", "--dataset", "fashion-mnist", "--data-root", "fm", "--epochs", "1", "--out",
                 str(run), "--device", "cpu", *TINY_VAE]) == 0
    recorded = load_model(run / "model.pt").meta["data_root"]
    assert os.path.isabs(recorded) and Path(recorded).resolve() == (tmp_path / "work" / "fm").resolve()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["evaluate", str(run)]) == 0
    first = json.loads((run / "evaluation.json").read_text())
    (tmp_path / "work" / "fm").rename(tmp_path / "moved")  # the data moved: the recorded folder is gone
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert main(["evaluate", str(run), "--data-root", "../moved"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["test_size"] == first["test_size"] == 4
    assert _run(["evaluate", str(run), "--data-root", "../gone"]) == 2
    assert "'../gone' does not exist" in capsys.readouterr().err


def test_evaluate_data_root_for_a_data_set_read_from_no_folder_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(run), "--device", "cpu", *TINY_VAE]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--data-root" in err and "'digits'" in err and "reads no folder" in err
    assert main(["evaluate", str(run), "--network", "asia"]) == 2  # --network only for bayes-net runs
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is a vae run; --network applies to bayes-net runs" in err


def test_every_package_warning_is_one_line_and_other_libraries_warnings_are_shown_as_python_shows_them(
        monkeypatch, capsys):
    """Carried from a warnings audit: only a TrainingWarning was one line; an EstimateWarning (``evaluate``'s AIS)
    or a DivergenceWarning of a run was shown the Python way, a file and line of the package and its source."""
    import warnings

    from hybridpgm.errors import DivergenceWarning, EstimateWarning
    from hybridpgm.recipes import RECIPES

    def run(args):
        warnings.warn("the AIS estimate rests on\n few chains", EstimateWarning)
        warnings.warn("the loss grew tenfold", DivergenceWarning)
        warnings.warn("a third-party note", UserWarning)
        return {}

    monkeypatch.setattr(RECIPES["vae"][0].module, "run", run)
    monkeypatch.setattr(sys, "argv", ["hybridpgm", "train", "vae", *TINY_VAE])
    others = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, *rest: others.append((category, str(message)))
        assert main() == 0
    assert capsys.readouterr().err.splitlines() == ["hybridpgm: warning: the AIS estimate rests on few chains",
                                                    "hybridpgm: warning: the loss grew tenfold"]
    assert others == [(UserWarning, "a third-party note")]  # passed on to the display the process had
