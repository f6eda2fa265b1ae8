import pytest

from hybridpgm.cli import main
from hybridpgm.generative import VAE
from hybridpgm.generative.gan import ConvGenerator, MLPGenerator
from tests.recipes.report import evaluate, train_and_check

TINY = ["--epochs", "1", "--batch-size", "256", "--hidden", "16", "--eval-samples", "50", "--classifier-steps", "5"]


@pytest.mark.parametrize("model,extra,kind", [
    ("gan", [], MLPGenerator), ("gan", ["--arch", "conv"], ConvGenerator), ("iwgan", [], MLPGenerator),
    ("infogan", [], MLPGenerator), ("aavae", ["--latent-dim", "3"], VAE),
])
def test_gan_family_recipes_write_the_report(model, extra, kind, tmp_path):
    out = tmp_path / model
    tiny = [a for a in TINY if a not in ("--hidden", "16")] if "conv" in extra else TINY  # conv takes no --hidden
    metrics, generator = train_and_check(model, out, tiny + extra, plots=("samples.png",))
    assert isinstance(generator, kind)
    assert metrics["arch"] == ("conv" if "conv" in extra else "mlp")
    assert metrics["hidden"] == (None if "conv" in extra else [16]) and metrics["precision"] == "fp32"
    assert 1.0 <= metrics["inception_score"] <= 10.0 and metrics["steps"] == 5
    assert set(metrics["final_train_loss"]) == {"discriminator", "generator"}
    if model == "infogan":
        assert 0 <= metrics["cluster_accuracy"] <= 1 and (out / "code_posterior.pt").exists()
    if model == "aavae":
        assert metrics["test_elbo"] < 0
        assert evaluate(out)["test_elbo"] == pytest.approx(metrics["test_elbo"], abs=1.0)
    assert main(["sample", str(out), "--num-samples", "4"]) == 0
    assert (out / "samples-seed0.png").stat().st_size > 0


def test_aavae_with_accumulation_needs_unnormalized_weights(tmp_path, capsys):
    """Batch-normalized weights are not a sum over rows, so ``fit`` refuses micro-batches: a one-line usage
    error that names the way out; ``--unnormalized-weights`` trains with them."""
    args = ["train", "aavae", *TINY, "--latent-dim", "3", "--accumulate", "2", "--no-progress", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "normalized")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "normalize_weights" in err
    out = tmp_path / "unnormalized"
    metrics, vae = train_and_check("aavae", out, TINY + ["--latent-dim", "3", "--accumulate", "2",
                                                         "--unnormalized-weights"])
    assert isinstance(vae, VAE) and metrics["steps"] == 5


@pytest.mark.parametrize("model", ["gan", "iwgan"])
def test_hidden_with_the_conv_arch_is_refused(model, tmp_path, capsys):
    """Before, ``--arch conv --hidden 5`` trained the convolutional networks (which have no such widths),
    ignored ``--hidden`` and recorded ``hidden: [5]`` in metrics.json."""
    out = tmp_path / "run"
    argv = ["train", model, *TINY, "--arch", "conv", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--hidden" in err and "--arch conv" in err
    assert not out.exists()
