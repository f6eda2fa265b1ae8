"""``hybridpgm evaluate|sample RUN``'s compute counts (hybridpgm/recipes/run_counts.py, hybridpgm/cli.py).

Found by an audit: ``evaluate RUN`` took its AIS chains and steps (``--eval-samples`` ...) from the run's
``model.pt``, and ``sample RUN`` a DBN's Gibbs sweeps, with no option to set them: a downloaded run recording
``ais_steps=10**9`` chose an evaluation that never ends.
"""

import json

import pytest
import torch

from hybridpgm import save
from hybridpgm.cli import main
from hybridpgm.energy import DBN, RBM


class _Ran(Exception):
    pass


def _rbm_run(tmp_path, **counts):
    run = tmp_path / "run"
    run.mkdir()
    save(RBM(64, 4), run / "model.pt", recipe="rbm", dataset="digits", data_root=None, seed=0,
         image_shape=[8, 8], **{"ais_chains": 10, "ais_steps": 20, **counts})
    return run


@pytest.fixture
def ais_calls(monkeypatch):
    """The ``(num_chains, num_steps)`` the rbm recipe's AIS was asked for; a count above the caps stops there."""
    import hybridpgm.recipes.rbm as recipe

    calls, real = [], recipe.estimate_log_z

    def spy(rbm, data, *, num_chains, num_steps, **kwargs):
        calls.append((num_chains, num_steps))
        if num_steps > 100_000:  # above the cap: not run here
            raise _Ran(num_steps)
        return real(rbm, data, num_chains=num_chains, num_steps=num_steps, **kwargs)

    monkeypatch.setattr(recipe, "estimate_log_z", spy)
    return calls


def test_a_count_above_its_cap_in_the_file_is_refused_before_any_work(tmp_path, capsys, ais_calls):
    run = _rbm_run(tmp_path, ais_steps=10**9)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records --ais-steps 1,000,000,000, above the cap 100,000" in err
    assert "pass --ais-steps 1000000000 to evaluate with it anyway" in err
    assert ais_calls == [] and not (run / "evaluation.json").exists()


def test_a_count_passed_on_the_command_line_wins(tmp_path, ais_calls):
    run = _rbm_run(tmp_path, ais_steps=10**9)
    assert main(["evaluate", str(run), "--ais-steps", "30", "--ais-chains", "5"]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert ais_calls == [(5, 30)] and (report["ais_chains"], report["ais_steps"]) == (5, 30)
    with pytest.raises(_Ran):  # passed explicitly, above the cap: taken as asked
        main(["evaluate", str(run), "--ais-steps", str(10**9)])
    assert ais_calls[-1] == (10, 10**9)


def test_the_runs_own_counts_below_their_caps_are_used(tmp_path, ais_calls):
    run = _rbm_run(tmp_path, ais_chains=7, ais_steps=40)
    assert main(["evaluate", str(run)]) == 0
    assert ais_calls == [(7, 40)]
    assert json.loads((run / "evaluation.json").read_text())["ais_steps"] == 40


@pytest.mark.parametrize("value", ["many", 2.5, True, 0, None])
def test_a_count_that_is_not_a_positive_integer_is_one_line(tmp_path, capsys, ais_calls, value):
    run = _rbm_run(tmp_path, ais_chains=value)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"records ais_chains {value!r}, not a positive integer" in err
    assert ais_calls == []


def test_a_count_the_runs_recipe_does_not_take_is_refused(tmp_path, capsys, ais_calls):
    run = _rbm_run(tmp_path)
    assert main(["evaluate", str(run), "--eval-samples", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a rbm run; --eval-samples applies to evaluate of aavae, gan, infogan, " \
        "iwae, iwgan, sbn, vae runs" in err
    assert main(["sample", str(run), "--gibbs-steps", "5"]) == 2
    assert "--gibbs-steps applies to sample of dbm, dbn runs" in capsys.readouterr().err


def test_sample_caps_a_dbns_gibbs_steps(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    save(DBN([64, 4, 3]), run / "model.pt", recipe="dbn", dataset="digits", data_root=None, seed=0,
         image_shape=[8, 8], feature_shape=[64], gibbs_steps=10**9)
    seen = []

    def sample(self, num_samples, steps):  # the sweeps asked for, then blank images (a real DBN would run them)
        seen.append(steps)
        return torch.zeros(num_samples, 64)

    monkeypatch.setattr(DBN, "sample", sample)
    assert main(["sample", str(run)]) == 2
    assert "records --gibbs-steps 1,000,000,000, above the cap 10,000" in capsys.readouterr().err and seen == []
    assert main(["sample", str(run), "--gibbs-steps", "7", "--num-samples", "4"]) == 0
    assert seen == [7] and (run / "samples-seed0.png").stat().st_size > 0


def test_every_cap_is_at_least_ten_times_every_recipes_default():
    """Before, the GANs' --eval-samples default (2,000) had the cap 10,000: five times, where the docs said ten
    or more."""
    from hybridpgm.cli import build_parser
    from hybridpgm.recipes.run_counts import CAPS, COUNTS

    parser = build_parser()
    for command, models in COUNTS.items():
        for model, counts in models.items():
            defaults = vars(parser.parse_args(["train", model]))
            for name in counts:
                assert CAPS[name] >= 10 * defaults[name], (command, model, name, defaults[name], CAPS[name])


def test_a_gan_runs_ten_times_its_default_eval_samples_is_read_from_the_file():
    from argparse import Namespace
    from pathlib import Path

    from hybridpgm.errors import ConfigError
    from hybridpgm.recipes.run_counts import resolve_counts

    meta = {"eval_samples": 20_000, "classifier_steps": 500}
    resolve_counts(meta, Namespace(), "evaluate", "gan", Path("run"))
    assert meta["eval_samples"] == 20_000
    with pytest.raises(ConfigError, match=r"records --eval-samples 20,001, above the cap 20,000"):
        resolve_counts({**meta, "eval_samples": 20_001}, Namespace(), "evaluate", "gan", Path("run"))


def _bayes_net_run(tmp_path, **sizes):
    from hybridpgm.graphs import load_network
    from hybridpgm.recipes.bayes_net import learner_for

    run = tmp_path / "run"
    run.mkdir()
    learner = learner_for(load_network("asia"), torch.Generator().manual_seed(1))
    save(learner, run / "model.pt", recipe="bayes-net", dataset="bif", data_root=None, seed=0, network="asia",
         missing=0.3, **{"num_data": 200, "num_test": 50, **sizes})
    return run


@pytest.fixture
def drawn_rows(monkeypatch):
    """The row counts the bayes-net recipe drew; a count above the caps stops there (it would take minutes)."""
    import hybridpgm.recipes.bayes_net as recipe

    calls, real = [], recipe._rows

    def spy(truth, n, missing, generator):
        calls.append(n)
        if n > 50_000:
            raise _Ran(n)
        return real(truth, n, missing, generator)

    monkeypatch.setattr(recipe, "_rows", spy)
    return calls


@pytest.mark.parametrize("name, value, shown", [("num_data", 10**8, "--num-data 100,000,000, above the cap 50,000"),
                                                ("num_test", 10**6, "--num-test 1,000,000, above the cap 10,000")])
def test_a_bayes_net_runs_recorded_row_counts_are_capped(tmp_path, capsys, drawn_rows, name, value, shown):
    """Before, evaluate drew as many rows as the file said (20,000 times the defaults took 38 s, growing
    linearly)."""
    run = _bayes_net_run(tmp_path, **{name: value})
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"records {shown}" in err and drawn_rows == []
    assert main(["evaluate", str(run), "--num-data", "60", "--num-test", "20"]) == 0
    assert drawn_rows == [60, 20]


def test_a_bayes_net_run_evaluated_with_its_own_row_counts_passed_scores_the_same_rows(tmp_path, drawn_rows):
    run = _bayes_net_run(tmp_path)
    assert main(["evaluate", str(run)]) == 0
    own = json.loads((run / "evaluation.json").read_text())
    assert main(["evaluate", str(run), "--num-data", "200", "--num-test", "50"]) == 0
    assert json.loads((run / "evaluation.json").read_text()) == own
    assert main(["evaluate", str(run), "--num-test", "80"]) == 0  # more held-out rows: other figures
    assert json.loads((run / "evaluation.json").read_text())["queries"] != own["queries"]
    assert drawn_rows == [200, 50, 200, 50, 200, 80]


def _crf_run(tmp_path, **sizes):
    from hybridpgm.recipes.models import CRFTagger

    run = tmp_path / "run"
    run.mkdir()
    save(CRFTagger(6, 3, 4), run / "model.pt", recipe="crf", dataset="hmm", data_root=None, seed=0,
         **{"num_symbols": 6, "num_labels": 3, "num_train": 40, "num_test": 10, "max_len": 8, **sizes})
    return run


@pytest.fixture
def crf_tasks(monkeypatch):
    """The ``(num_train, num_test, max_len)`` of the tasks the crf recipe drew; one above the caps stops there."""
    import hybridpgm.recipes.crf as recipe

    calls, real = [], recipe.make_task

    def spy(num_labels, num_symbols, num_train, num_test, max_len, seed):
        calls.append((num_train, num_test, max_len))
        if num_train > 40_000 or num_test > 10_000 or max_len > 300:
            raise _Ran(calls[-1])
        return real(num_labels, num_symbols, num_train, num_test, max_len, seed)

    monkeypatch.setattr(recipe, "make_task", spy)
    return calls


@pytest.mark.parametrize("name, value, shown", [("num_train", 10**7, "--num-train 10,000,000, above the cap 40,000"),
                                                ("num_test", 10**7, "--num-test 10,000,000, above the cap 10,000"),
                                                ("max_len", 10**6, "--max-len 1,000,000, above the cap 300")])
def test_a_crf_runs_recorded_task_sizes_are_capped(tmp_path, capsys, crf_tasks, name, value, shown):
    run = _crf_run(tmp_path, **{name: value})
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"records {shown}" in err and crf_tasks == []
    assert main(["evaluate", str(run), "--num-train", "40", "--num-test", "10", "--max-len", "8"]) == 0
    assert crf_tasks == [(40, 10, 8)]


def test_a_crf_run_evaluated_with_its_own_sizes_passed_scores_the_same_task(tmp_path, crf_tasks):
    run = _crf_run(tmp_path)
    assert main(["evaluate", str(run)]) == 0
    own = json.loads((run / "evaluation.json").read_text())
    assert main(["evaluate", str(run), "--num-train", "40", "--num-test", "10", "--max-len", "8"]) == 0
    assert json.loads((run / "evaluation.json").read_text()) == own
    assert crf_tasks == [(40, 10, 8)] * 2


@pytest.mark.parametrize("name, value", [("num_labels", 10**5), ("num_symbols", 7), ("num_labels", 3.0)])
def test_a_crf_run_whose_recorded_vocabulary_or_labels_are_not_its_taggers_is_refused(tmp_path, capsys, crf_tasks,
                                                                                     name, value):
    """Before, evaluate drew an HMM of the recorded sizes (10**5 labels: a 10**5 x 10**5 table) before the
    tagger failed on it."""
    run = _crf_run(tmp_path, **{name: value})
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    size = 3 if name == "num_labels" else 6
    assert err.count("\n") == 1 and f"records {name} {value!r}, but its tagger has {size}" in err
    assert crf_tasks == []
