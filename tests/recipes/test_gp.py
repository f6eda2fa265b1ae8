import functools
import json

import pytest
import torch

import hybridpgm
from hybridpgm.cli import main
from hybridpgm.gp import GPLSTM, DeepKernelGP
from hybridpgm.train import load_checkpoint
from tests.recipes.report import evaluate, train_and_check
from tests.train.helpers import TermAt


@pytest.mark.parametrize("model,args,kind", [
    ("dkl", ["--epochs", "10", "--hidden", "8"], DeepKernelGP),
    ("gp-lstm", ["--epochs", "1", "--hidden", "4", "--window", "6"], GPLSTM),
])
def test_gp_recipes_write_the_report_and_reload(model, args, kind, tmp_path):
    metrics, gp = train_and_check(model, tmp_path, args, plots=("coverage.png",), checkpoint=True)
    assert isinstance(gp, kind) and gp.train_x.shape[0] == metrics["train_size"]
    assert metrics["test_rmse"] > 0 and 0 <= metrics["test_coverage_95"] <= 1
    saved = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True
    assert saved["step"] == metrics["steps"] and saved["stopped_early"] == metrics["stopped_early"]
    assert [entry["class"].rsplit(".", 1)[-1] for entry in saved["callbacks"]] == \
        ["EvaluateEvery", "EarlyStopping", "_KeepBest"]
    report = evaluate(tmp_path)
    for key in ("test_rmse", "test_nlpd", "test_coverage_95"):
        assert report[key] == pytest.approx(metrics[key], rel=1e-4)



#: a learning rate high enough that the validation NLL turns up: the run stops early at step 11, best step 8
DKL = ["train", "dkl", "--hidden", "8", "--eval-every", "1", "--patience", "3", "--lr", "0.1", "--no-progress",
       "--device", "cpu"]
SAME = ("steps", "best_step", "stopped_early", "best_validation_nll", "test_rmse", "test_nlpd", "test_coverage_95")


def _result(out):
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: metrics[k] for k in SAME}, hybridpgm.load(out / "model.pt").state_dict()


def _assert_same(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_dkl_preempted_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    import hybridpgm.recipes.gp as recipe

    assert main(DKL + ["--epochs", "40", "--out", str(tmp_path / "whole")]) == 0
    whole = _result(tmp_path / "whole")
    assert (whole[0]["steps"], whole[0]["best_step"], whole[0]["stopped_early"]) == (11, 8, True)
    out = tmp_path / "cut"
    fit_validated = recipe.fit_validated
    monkeypatch.setattr(recipe, "fit_validated", functools.partial(fit_validated, callbacks=[TermAt(10)]))
    assert main(DKL + ["--epochs", "40", "--out", str(out)]) == 143
    assert "run the same command with --resume" in capsys.readouterr().err
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["step"] == 10 and not (out / "metrics.json").exists()
    assert saved["callbacks"][1]["state"]["bad_rounds"] == 2 and saved["callbacks"][2]["state"]["step"] == 8
    monkeypatch.setattr(recipe, "fit_validated", fit_validated)
    assert main(DKL + ["--epochs", "40", "--out", str(out)]) == 2  # neither --resume nor --overwrite
    assert main(DKL + ["--epochs", "40", "--out", str(out), "--resume"]) == 0
    assert "resuming ExactMLLObjective" in capsys.readouterr().err
    _assert_same(_result(out), whole)


def test_dkl_resume_extends_a_finished_run(tmp_path):
    assert main(DKL + ["--epochs", "40", "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "short"
    assert main(DKL + ["--epochs", "6", "--out", str(out)]) == 0
    assert not load_checkpoint(out / "checkpoint.pt")["stopped_early"]
    assert main(DKL + ["--epochs", "40", "--out", str(out), "--resume"]) == 0
    _assert_same(_result(out), _result(tmp_path / "whole"))
    assert main(DKL + ["--epochs", "60", "--out", str(out), "--resume"]) == 0  # stopped early: runs no step
    _assert_same(_result(out), _result(tmp_path / "whole"))


def test_gp_lstm_recipe_trains_with_the_accumulate_and_precision_it_is_given(tmp_path):
    """Before, ``--accumulate`` and ``--precision`` were parsed and dropped: the run trained with accumulate=1 in
    fp32, as its checkpoint recorded."""
    args = ["train", "gp-lstm", "--epochs", "1", "--hidden", "4", "--window", "6", "--batch-size", "32",
            "--accumulate", "2", "--precision", "fp32", "--no-progress", "--device", "cpu", "--out", str(tmp_path)]
    assert main(args) == 0  # (oneDNN has no reduced-precision LSTM on the CPU: bf16 is for CUDA)
    config = load_checkpoint(tmp_path / "checkpoint.pt")["config"]
    assert (config["accumulate"], config["precision"]) == (2, "fp32")


def test_dkl_epochs_are_passes_and_metrics_record_what_ran(tmp_path):
    """Before, dkl's ``--epochs`` counted steps (a smaller ``--batch-size`` still ran ``--epochs`` steps),
    metrics.json recorded the device flag (``auto``) and the requested batch (``1000000``, of 266 rows), and
    no precision."""
    out = tmp_path / "run"
    argv = ["train", "dkl", "--epochs", "2", "--hidden", "4", "--patience", "100", "--no-progress",
            "--device", "auto", "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    fit_rows = load_checkpoint(out / "checkpoint.pt")["config"]["num_examples"]  # less the validation tail
    assert 200 < fit_rows < metrics["train_size"]
    assert metrics["steps"] == 2 and metrics["batch_size"] == fit_rows  # full batch: one step a pass
    assert metrics["device"] == str(hybridpgm.train.device.resolve_device("auto")) != "auto"
    assert metrics["precision"] == "fp32"
    assert main(argv[:-1] + [str(tmp_path / "small"), "--batch-size", "100"]) == 0
    metrics = json.loads((tmp_path / "small" / "metrics.json").read_text())
    assert metrics["steps"] == 2 * -(-fit_rows // 100) and metrics["batch_size"] == 100
    # the examples trained on: two passes over the fit rows, the short last batch of each counted as what it holds
    # (found by an audit: the throughput counted every step as a full batch, about 9% too many examples)
    seen = metrics["train_examples_per_s"] * metrics["train_wall_time_s"]
    assert seen == pytest.approx(2 * fit_rows, rel=1e-9)


@pytest.mark.parametrize("num_test,window", [(150, 2), (99, 2), (98, 2), (76, 2)])
def test_gp_lstm_num_test_leaving_no_training_window_is_one_line_naming_it(num_test, window, tmp_path, capsys):
    """Before, ``--num-test`` >= the series' length gave torch's ``std()`` UserWarning and an error about "a
    series of length 0" or NaN values, naming neither ``--num-test`` nor the length (nile has 100 values)."""
    import warnings

    from hybridpgm.errors import ConfigError
    from hybridpgm.recipes.gp import load_windows

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "gp-lstm", "--dataset", "nile", "--num-test", str(num_test), "--window", str(window),
                     "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"--num-test {num_test}" in err and "100 values" in err
    # the validation tail (0.2 by default) needs 23 training windows: the hint names the largest --num-test
    # that leaves them (before, it named 97, which split_tail then refused)
    assert "leaves fewer than the 23 training windows needed" in err and "use --num-test 75 or less" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="at most 100"):
        load_windows("nile", window, max(num_test, 98))
    data = load_windows("nile", window, 97)  # the largest --num-test: one training window
    assert data["x_train"].shape[0] == 1 and data["x_test"].shape[0] == 97


@pytest.mark.parametrize("model,args", [("dkl", ["--hidden", "4"]),
                                        ("gp-lstm", ["--hidden", "4", "--window", "6", "--dataset", "nile"])])
def test_model_file_records_the_standardization_to_predict_in_data_units(model, args, tmp_path):
    """Found by the LOADTRAINED audit (session 39): model.pt held no record of the standardization, so a model
    loaded in a notebook answered in standardized units with no way back from the file; dkl's meta carried
    ``window: None, num_test: None``."""
    from hybridpgm.data import load_series, make_windows
    from hybridpgm.recipes.gp import STANDARDIZATION, load_regression, load_windows
    from hybridpgm.serialization import load_model

    out = tmp_path / model
    assert main(["train", model, "--epochs", "1", "--out", str(out), "--no-progress", "--device", "cpu", *args]) == 0
    saved = load_model(out / "model.pt")
    m = saved.meta
    assert set(STANDARDIZATION) <= set(m)
    if model == "dkl":
        from sklearn.datasets import load_diabetes

        assert "window" not in m and "num_test" not in m
        raw = load_diabetes()
        data = load_regression(m["seed"])
        order = torch.randperm(len(raw.target), generator=torch.Generator().manual_seed(m["seed"]))
        test = order[: len(raw.target) // 4]
        x_raw = torch.as_tensor(raw.data, dtype=torch.float32)[test]
        y_raw = torch.as_tensor(raw.target, dtype=torch.float32)[test]
        assert len(m["x_loc"]) == len(m["x_scale"]) == 10
    else:
        data = load_windows("nile", 6, m["num_test"])
        values = load_series("nile").values.to(torch.float32)
        x_raw, y_raw = make_windows(values[-(m["num_test"] + 6):], 6)
        assert m["x_loc"] == m["y_loc"] and m["x_scale"] == m["y_scale"]
    # the file alone gives the model's inputs from raw data, bitwise as the recipe made them
    x = (x_raw - torch.tensor(m["x_loc"])) / torch.tensor(m["x_scale"])
    assert torch.equal(x, data["x_test"])
    assert torch.allclose((y_raw - m["y_loc"]) / m["y_scale"], data["y_test"], rtol=0, atol=1e-5)
    with torch.no_grad():
        pred = saved.module.predict(x)
    rmse = float(((m["y_loc"] + m["y_scale"] * pred.mean - y_raw) ** 2).mean().sqrt())
    metrics = json.loads((out / "metrics.json").read_text())
    assert rmse == pytest.approx(metrics["test_rmse"], rel=1e-4)  # the report's RMSE is in data units
