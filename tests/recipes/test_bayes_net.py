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


def test_evaluate_network_reads_a_moved_bif_file_and_refuses_another_network(tmp_path, capsys):
    """Before, a run whose .bif file had moved could not be evaluated again: ``evaluate`` had no ``--network``
    (only ``--data-root``), and the recorded absolute path gave "BIF file not found"."""
    from hybridpgm.graphs import load_network, write_bif

    tiny = ["--epochs", "1", "--num-data", "50", "--num-test", "20", "--no-progress", "--device", "cpu"]
    write_bif(load_network("asia"), tmp_path / "mynet.bif")
    run = tmp_path / "run"
    assert main(["train", "bayes-net", "--network", str(tmp_path / "mynet.bif"), "--out", str(run), *tiny]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    (tmp_path / "mynet.bif").rename(tmp_path / "moved.bif")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    assert "BIF file not found" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--network", str(tmp_path / "moved.bif")]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"], rel=1e-5)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--network", "cancer"]) == 2  # another bundled network: other nodes
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "network 'cancer' has nodes" in err and "trained network" in err
    write_bif(_with_an_extra_state(load_network("asia"), "smoke"), tmp_path / "other.bif")
    assert main(["evaluate", str(run), "--network", str(tmp_path / "other.bif")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "node 'smoke' has parents [] and 3 states" in err
    capsys.readouterr()
    assert main(["evaluate", str(run), "--network", "asia"]) == 0  # the bundled original: the same structure


def _with_an_extra_state(bn, node):
    """``bn`` with one state more at the root ``node`` (its children's tables repeat their last slice for it)."""
    import torch

    from hybridpgm.graphs import BayesNet, cpd

    cpds = {}
    for v in bn.nodes:
        probs, parents = bn.cpds[v].probs.detach(), list(bn.parents(v))
        if v == node:
            probs = torch.cat([probs * 0.9, torch.full((1,), 0.1, dtype=probs.dtype)])
        elif node in parents:
            axis = parents.index(node)
            probs = torch.cat([probs, probs.narrow(axis, probs.shape[axis] - 1, 1)], dim=axis)
        cpds[v] = cpd.Table(probs, parents)
    return BayesNet(cpds)


def _reordered(bn, node=None):
    """``bn`` declared with its nodes in reverse order, or (``node``) with the states of ``node`` listed in reverse
    (its table and its children's reversed along its axis: the same distribution)."""
    from hybridpgm.graphs import BayesNet, cpd

    out = BayesNet()
    for v in (reversed(bn.nodes) if node is None else bn.nodes):
        probs, parents = bn.cpds[v].probs.detach(), list(bn.parents(v))
        states = bn.state_names.get(v)
        if v == node:
            probs, states = probs.flip(0), list(reversed(states))
        elif node in parents:
            probs = probs.flip(1 + parents.index(node))
        out.add(v, cpd.Table(probs, parents), states=states)
    return out.check()


def test_evaluate_network_in_another_node_order_scores_alike_and_other_state_orders_are_refused(tmp_path, capsys):
    """Before, ``evaluate --network`` refused the trained network written with its nodes in another order ("has
    nodes [...]", the same set), and silently scored against the wrong states when the file listed a node's states
    in another order (asia's test log-likelihood -7.28 for -5.87)."""
    from hybridpgm.graphs import load_network, write_bif

    tiny = ["--epochs", "1", "--num-data", "50", "--num-test", "20", "--no-progress", "--device", "cpu"]
    run = tmp_path / "run"
    assert main(["train", "bayes-net", "--network", "asia", "--out", str(run), *tiny]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    write_bif(_reordered(load_network("asia")), tmp_path / "nodes.bif")
    assert main(["evaluate", str(run), "--network", str(tmp_path / "nodes.bif")]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    for key in ("test_log_likelihood", "query_accuracy", "query_total_variation"):
        assert report[key] == pytest.approx(metrics[key], rel=1e-6)
    write_bif(_reordered(load_network("asia"), "asia"), tmp_path / "states.bif")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--network", str(tmp_path / "states.bif")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "node 'asia' has the states ['no', 'yes'], the trained network " \
        "['yes', 'no']" in err
