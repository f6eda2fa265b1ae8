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
