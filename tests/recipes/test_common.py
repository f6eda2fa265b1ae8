"""The flags and figures every recipe shares (hybridpgm/recipes/common.py)."""

from types import SimpleNamespace

import pytest

import hybridpgm.recipes.common as common


@pytest.mark.parametrize("world", [1, 4])
def test_throughput_counts_the_examples_each_rank_trains_on(world, monkeypatch):
    """Each of ``W`` ranks trains on ``N // W`` examples, an epoch of ``ceil((N // W) / B)`` steps.  Before,
    epochs were laid out over all ``N`` examples and then multiplied by ``W``: 6052 counted instead of 5024 for
    1257 digits, batches of 128, 4 ranks and 4 epochs."""
    n, batch, epochs = 1257, 128, 4
    shard = n // world
    steps_per_epoch = -(-shard // batch)
    monkeypatch.setattr(common, "current", lambda: SimpleNamespace(world_size=world))
    seen = common.throughput(SimpleNamespace(steps=epochs * steps_per_epoch), n, batch, 0, seconds=2.0) * 2.0
    assert seen == pytest.approx(epochs * world * shard)
    # a resumed run counts only its own steps: the last epoch
    resumed = common.throughput(SimpleNamespace(steps=epochs * steps_per_epoch), n, batch,
                                (epochs - 1) * steps_per_epoch, seconds=1.0)
    assert resumed == pytest.approx(world * shard)


#: per recipe: tiny arguments, and an option of the recipe's own that changes the run (not fit's settings)
_TINY_RUNS = {
    "iwae": (["--epochs", "1", "--batch-size", "256", "--latent-dim", "2", "--hidden", "8", "--eval-samples", "2",
              "--eval-size", "4"], ["--particles", "3"], "--particles"),
    "rbm": (["--epochs", "1", "--batch-size", "256", "--hidden", "8", "--ais-chains", "10", "--ais-steps", "20"],
            ["--k", "2"], "--k"),
    "bayes-net": (["--epochs", "1", "--num-data", "200", "--num-test", "50", "--batch-size", "200"],
                  ["--missing", "0.5"], "--missing"),
    "iwgan": (["--epochs", "1", "--batch-size", "512", "--hidden", "8", "--eval-samples", "20",
               "--classifier-steps", "2"], ["--importance-samples", "2"], "--importance-samples"),
    "sbn": (["--epochs", "1", "--batch-size", "512", "--hidden", "4", "--eval-samples", "2", "--eval-size", "4"],
            ["--particles", "3"], "--particles"),
    "dbn": (["--epochs", "1", "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2"], ["--k", "2"],
            "--k"),
    "dkl": (["--epochs", "2", "--hidden", "4"], ["--patience", "3"], "--patience"),
}


@pytest.mark.parametrize("model", sorted(_TINY_RUNS))
def test_resume_refuses_another_recipe_option_naming_it(model, tmp_path, capsys):
    """Before, only fit's own settings were recorded: ``--resume`` with another ``--particles``, ``--k``,
    ``--missing`` ... went on silently with the new value (a ``dbn`` refuses in its first greedy stage)."""
    from hybridpgm.cli import main
    from hybridpgm.train import load_checkpoint

    tiny, change, flag = _TINY_RUNS[model]
    base = ["train", model, *tiny, "--no-progress", "--device", "cpu", "--out", str(tmp_path)]
    assert main(base) == 0
    first = "checkpoint-stage0.pt" if model == "dbn" else "checkpoint.pt"
    steps = load_checkpoint(tmp_path / first)["step"]
    capsys.readouterr()
    assert main(base + change + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"config['{flag}']: checkpoint " in err and first in err
    assert load_checkpoint(tmp_path / first)["step"] == steps  # untouched
    assert main(base + change + ["--resume", "--override-hyperparameters"]) == 0


def test_override_hyperparameters_without_resume_is_refused(tmp_path, capsys):
    """Before, ``--override-hyperparameters`` without ``--resume`` was accepted and did nothing."""
    from hybridpgm.cli import main

    argv = ["train", "crf", "--epochs", "1", "--num-train", "20", "--num-test", "5", "--hidden", "4",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run"), "--override-hyperparameters"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--override-hyperparameters" in err and "--resume" in err
    assert not (tmp_path / "run").exists()
    assert main(argv + ["--overwrite"]) == 2


def test_the_run_configuration_leaves_out_fit_settings_and_reporting_options():
    from types import SimpleNamespace

    args = SimpleNamespace(model="crf", dataset="hmm", data_root=None, epochs=3, batch_size=8, accumulate=1,
                           lr=0.1, precision=None, seed=0, device="auto", out="x", resume=True, overwrite=False,
                           override_hyperparameters=False, checkpoint_every=100, no_progress=True, max_len=7,
                           num_test=5, hidden=[4, 2])
    assert common.recipe_config(args, reporting=("num_test",), hidden=[4]) == {
        "model": "crf", "--dataset": "hmm", "--max-len": 7, "--hidden": [4]}


def test_machine_description_names_the_cpu_and_the_kernels_torch_dispatches_to(monkeypatch, tmp_path):
    """Before, the reports named only ``x86_64``: two sessions' VAE step ratios (1.06 and 1.16) came from CPUs of
    one family with and without AVX-512, which the JSON could not tell apart."""
    import builtins

    import torch

    described = common.machine_description()
    assert described["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path,
                                                                          *a, **k))
    assert common.machine_description()["cpu_model"] == "Some CPU 9000"
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(FileNotFoundError(path))
                        if path == "/proc/cpuinfo" else real_open(path, *a, **k))
    monkeypatch.setattr(common.platform, "processor", lambda: "")
    assert common.machine_description()["cpu_model"] is None  # no /proc (macOS, Windows) and no processor name
