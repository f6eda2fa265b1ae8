"""``hybridpgm evaluate|sample RUN --output``: a path the command cannot write as the recipe writes it is one
line and exit 2 (hybridpgm/cli.py).  Before, a FIFO or a symbolic link was replaced by a regular file (exit 0),
and ``sample --output x.csv`` or ``x.foo`` for an image recipe was matplotlib's traceback and exit 1."""

import os
import stat

import pytest

from hybridpgm.cli import main

TINY = {"rbm": ["--epochs", "1", "--batch-size", "256", "--hidden", "8", "--ais-chains", "10", "--ais-steps", "20"],
        "bayes-net": ["--epochs", "1", "--num-data", "200", "--num-test", "50", "--batch-size", "200"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for model, extra in TINY.items():
        assert main(["train", model, *extra, "--no-progress", "--out", str(root / model)]) == 0
    return root


def _one_line_error(capsys, argv, *words):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hybridpgm: error: "), err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("model,command,name", [("rbm", "evaluate", "fifo"), ("bayes-net", "evaluate", "fifo"),
                                                ("bayes-net", "sample", "fifo2.csv"), ("rbm", "sample", "fifo.png")])
def test_a_fifo_output_is_refused_and_kept(runs, tmp_path, capsys, model, command, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    _one_line_error(capsys, [command, str(runs / model), "--output", str(fifo)], str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("command,name", [("evaluate", "link.json"), ("sample", "link.csv")])
def test_a_symbolic_link_output_is_refused_and_its_target_kept(runs, tmp_path, capsys, command, name):
    (tmp_path / "target").write_text("kept\n")
    os.symlink("target", tmp_path / name)
    _one_line_error(capsys, [command, str(runs / "bayes-net"), "--output", str(tmp_path / name)], "symbolic link")
    assert os.path.islink(tmp_path / name) and (tmp_path / "target").read_text() == "kept\n"


@pytest.mark.parametrize("model,name,word", [("rbm", "x.foo", "'.foo'"), ("rbm", "samples.csv", "'.csv'"),
                                             ("bayes-net", "samples.png", ".csv")])
def test_a_sample_suffix_the_recipe_does_not_write_is_one_line(runs, tmp_path, capsys, model, name, word):
    _one_line_error(capsys, ["sample", str(runs / model), "--output", str(tmp_path / name)], name, word)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("model,name", [("rbm", "s.pdf"), ("rbm", "s.PNG"), ("bayes-net", "s.csv")])
def test_a_sample_suffix_the_recipe_writes_is_written(runs, tmp_path, capsys, model, name):
    assert main(["sample", str(runs / model), "--num-samples", "4", "--output", str(tmp_path / name)]) == 0
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).stat().st_size > 0


def test_metrics_json_never_replaces_a_fifo(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / "metrics.json")
    capsys.readouterr()
    assert main(["train", "bayes-net", *TINY["bayes-net"], "--no-progress", "--out", str(out), "--overwrite"]) == 2
    assert "metrics.json" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(out / "metrics.json").st_mode)
