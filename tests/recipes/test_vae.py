import json

import pytest

import hybridpgm  # noqa: F401
from hybridpgm.cli import build_parser, main

TINY = ["--epochs", "1", "--batch-size", "256", "--latent-dim", "2", "--hidden", "8", "--eval-samples", "2",
        "--eval-size", "4", "--no-progress", "--device", "cpu"]


def _status(argv):
    """``main(argv)``'s exit status, with argparse's exits turned into statuses."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("particles", ["5", "1"])
def test_vae_refuses_particles(particles, tmp_path, capsys):
    """Found by an audit: ``train vae --particles 5`` trained the single-sample ELBO and recorded particles 5 in
    metrics.json.  --particles is a flag of iwae only: one usage line and exit 2, before anything runs."""
    out = tmp_path / "run"
    assert _status(["train", "vae", *TINY, "--particles", particles, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--particles" in err and err.startswith("hybridpgm: error:")
    assert not out.exists()


def test_iwae_takes_particles():
    args = build_parser().parse_args(["train", "iwae", "--particles", "3"])
    assert args.particles == 3
    assert build_parser().parse_args(["train", "iwae"]).particles == 5


def test_vae_records_the_single_sample_it_trains_with(tmp_path):
    out = tmp_path / "vae"
    assert main(["train", "vae", *TINY, "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["particles"] == 1


@pytest.mark.parametrize("model, label", [("vae", "loss = -ELBO, nats per example"),
                                          ("iwae", "loss = -L_3 (negative IWAE bound), nats per example")])
def test_the_loss_curve_is_labelled_with_what_the_objective_records(model, label, tmp_path, monkeypatch):
    """Found by an audit: loss.png took plot_loss_curves' default "loss = -ELBO (nats per example)" for IWAE's
    -L_K too; the default now names the player only, and the recipe, which knows its objective, says which."""
    from hybridpgm.recipes import vae as recipe

    labels = {}
    real = recipe.plot_loss_curves
    monkeypatch.setattr(recipe, "plot_loss_curves", lambda *a, **k: (labels.update(k["labels"]), real(*a, **k))[1])
    extra = ["--particles", "3"] if model == "iwae" else []
    assert main(["train", model, *TINY, *extra, "--out", str(tmp_path / model)]) == 0
    assert labels == {"elbo": label}
