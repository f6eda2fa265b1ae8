"""Every figure of every recipe's metrics.json and evaluation.json has a unit (hybridpgm/recipes/common.py).

Before, dbm's evaluation.json gave one string, "nats per example", for log_z (nats of the whole partition
function), log_z_stderr and ais_ess (a number of chains); crf, dkl, gp-lstm, gan, infogan and aavae wrote no
units into evaluation.json at all; metrics.json left log_z_stderr, ais_ess, log_z_starts and the RBM's
validation figures without one; gan's metrics.json did not record --eval-samples nor --classifier-steps, the
VAE's not the samples of its test ELBO.
"""

import json

import pytest

from hybridpgm.cli import main
from hybridpgm.recipes.common import SETTINGS, unit_of
from tests.recipes.test_common import _TINY_RUNS

_GAN = ["--epochs", "1", "--batch-size", "512", "--hidden", "8", "--eval-samples", "20", "--classifier-steps", "2"]

#: tiny arguments of every recipe (those of test_common's resume test where it has them)
TINY = {
    **{model: tiny for model, (tiny, _, _) in _TINY_RUNS.items()},
    "rbm": _TINY_RUNS["rbm"][0] + ["--eval-every", "1"],  # the validation figures are recorded
    "vae": _TINY_RUNS["iwae"][0],
    "dbm": ["--epochs", "1", "--batch-size", "512", "--hidden", "6", "4", "--chains", "20", "--ais-chains", "10",
            "--ais-steps", "20", "--gibbs-steps", "2"],
    "gan": _GAN, "infogan": _GAN, "aavae": _GAN + ["--latent-dim", "2"],
    "crf": ["--epochs", "1", "--num-train", "20", "--num-test", "5", "--hidden", "4", "--max-len", "5"],
    "gp-lstm": ["--epochs", "1", "--hidden", "4", "--window", "6"],
}


def numbers_without_unit(report: dict) -> list[str]:
    """The dotted paths of the numbers (not bools; in nested dicts and lists too) of ``report`` without a unit
    in ``report["units"]``, the run's settings (``common.SETTINGS``), ``units`` and ``versions`` left out."""
    units, missing = report.get("units"), []
    units = units if isinstance(units, dict) else {}

    def walk(value, path):
        if isinstance(value, dict):
            for key, member in value.items():
                walk(member, (*path, str(key)))
        elif isinstance(value, list):
            for member in value:
                walk(member, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and unit_of(units, path) is None:
            missing.append(".".join(path))

    for key, value in report.items():
        if key not in SETTINGS and key not in ("units", "versions"):
            walk(value, (key,))
    return sorted(set(missing))


def test_unit_of_reads_string_and_member_units():
    units = {"log_z": "nats", "loss": "nats per example",
             "validation": {"error": "squared error"}, "starts": {"*": {"log_z": "nats", "ess": "chains"}}}
    assert unit_of(units, ("log_z",)) == "nats"
    assert unit_of(units, ("loss", "generator")) == "nats per example"  # a dict's string unit covers its members
    assert unit_of(units, ("validation", "error")) == "squared error"
    assert unit_of(units, ("validation", "other")) is None
    assert unit_of(units, ("starts", "data", "ess")) == "chains" and unit_of(units, ("starts", "data", "x")) is None
    assert unit_of(units, ("validation",)) is None and unit_of(units, ("missing",)) is None
    assert numbers_without_unit({"a": 1.0, "b": {"c": 2, "d": True}, "epochs": 3, "units": {"b": {"c": "s"}}}) \
        == ["a"]


@pytest.mark.parametrize("model", sorted(TINY))
def test_every_number_of_the_reports_has_a_unit(model, tmp_path):
    out = tmp_path / model
    assert main(["train", model, *TINY[model], "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    assert main(["evaluate", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert numbers_without_unit(metrics) == []
    assert isinstance(evaluation["units"], dict) and numbers_without_unit(evaluation) == []
    assert set(evaluation["units"]) <= set(evaluation) and set(metrics["units"]) <= set(metrics)
    if model == "rbm":
        assert set(metrics["validation"]) == {"reconstruction_error", "pseudo_log_likelihood"}
    if model in ("gan", "infogan", "aavae"):  # what the inception score depends on
        for report in (metrics, evaluation):
            assert report["eval_samples"] == 20 and report["classifier_steps"] == 2
    if model in ("vae", "iwae", "aavae"):  # the samples of the test ELBO
        assert metrics["elbo_samples"] == evaluation["elbo_samples"] == 10
    if model == "dbm":
        assert evaluation["units"]["log_z"] == "nats" and evaluation["units"]["ais_ess"].startswith("AIS chains")
