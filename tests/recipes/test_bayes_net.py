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
