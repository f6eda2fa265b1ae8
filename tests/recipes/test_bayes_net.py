import json
import os
from pathlib import Path

import pytest

from hybridpgm.cli import main
from hybridpgm.graphs import BayesNet
from tests.recipes.report import evaluate, train_and_check


def test_bayes_net_recipe_learns_from_incomplete_rows(tmp_path):
    args = ["--epochs", "10", "--num-data", "1000", "--num-test", "300", "--batch-size", "1000", "--lr", "0.1"]
    metrics, bn = train_and_check("bayes-net", tmp_path, args)
    assert isinstance(bn, BayesNet) and bn.nodes[:2] == ["asia", "tub"]
    # learning from the incomplete rows moves the held-out likelihood towards the true network's
    assert metrics["initial_test_log_likelihood"] < metrics["test_log_likelihood"]
    assert metrics["test_log_likelihood"] < metrics["true_network_test_log_likelihood"] + 0.1
    assert 0 <= metrics["query_accuracy"] <= 1 and metrics["queries"] > 0
    report = evaluate(tmp_path)
    assert report["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"], rel=1e-5)
    assert report["query_accuracy"] == pytest.approx(metrics["query_accuracy"])
    assert main(["sample", str(tmp_path), "--num-samples", "3"]) == 0
    lines = (tmp_path / "samples-seed0.csv").read_text().splitlines()
    assert lines[0].split(",") == bn.nodes and len(lines) == 4


def test_out_named_like_the_network_and_a_relative_bif_path_evaluated_from_elsewhere(tmp_path, monkeypatch):
    """Before, ``--network asia --out asia`` created ./asia and then read it as the network ("BIF path asia is
    not a regular file"); and a relative ``--network`` path was recorded as typed, so ``evaluate`` from another
    working directory could not find it."""
    from hybridpgm.graphs import load_network, write_bif
    from hybridpgm.serialization import load_model

    tiny = ["--epochs", "1", "--num-data", "50", "--num-test", "20", "--no-progress", "--device", "cpu"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "bayes-net", "--network", "asia", "--out", "asia", *tiny]) == 0
    assert load_model(tmp_path / "asia" / "model.pt").meta["network"] == "asia"  # a bundled name stays a name
    write_bif(load_network("asia"), tmp_path / "mynet.bif")
    assert main(["train", "bayes-net", "--network", "mynet.bif", "--out", "run", *tiny]) == 0
    recorded = load_model(tmp_path / "run" / "model.pt").meta["network"]
    assert os.path.isabs(recorded) and Path(recorded).resolve() == (tmp_path / "mynet.bif").resolve()
    monkeypatch.chdir(tmp_path / "elsewhere")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    report = evaluate(tmp_path / "run")
    assert report["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"], rel=1e-5)
