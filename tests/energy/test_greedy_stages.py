"""Greedy layer-wise pretraining called again to train further (hybridpgm/energy/greedy_stages.py): a layer that
resumes its checkpoint after a layer below trained in the same call is warned of; a preempted pretraining resuming
where it stopped is not."""

import json
import sys
import warnings

import pytest
import torch

from hybridpgm.energy import DBM, DBN
from hybridpgm.errors import TrainingWarning


def _data():
    return (torch.rand(32, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()


def _pretrain(model, paths, epochs, **fit_kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.pretrain(_data(), epochs=epochs, checkpoints=paths, batch_size=8, progress=False, seed=0, **fit_kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]


@pytest.mark.parametrize("kind", ["DBN", "DBM"])
def test_a_layer_resumed_after_a_layer_below_trained_further_is_warned_of(kind, tmp_path):
    """Audit: extending a DBN's pretraining (epochs 1 -> 2) trained layer 0 on, then resumed layer 1's checkpoint, a
    run on layer 0's old features, on its new ones: layer 1 ended where no greedy pretraining does, silently."""
    torch.manual_seed(0)
    model = DBN([6, 4, 3]) if kind == "DBN" else DBM([6, 4, 3])
    paths = [tmp_path / "l0.pt", tmp_path / "l1.pt"]
    assert _pretrain(model, paths, 1) == []
    assert _pretrain(model, paths, 1) == []  # resumed where it stopped (both finished): the same features
    messages = _pretrain(model, paths, 2)
    assert len(messages) == 1
    assert messages[0].startswith(f"{kind}.pretrain: layer 1 resumes its checkpoint {str(paths[1])!r} (step 4), a "
                                  "run on the features of layer 0 as they were before this call trained that layer")


def test_checkpoints_under_the_home_folder_are_read_where_fit_writes_them(tmp_path, monkeypatch):
    """reviewA: paths starting with ``~`` were tested for existence unexpanded (``fit`` expands them), so a resumed
    layer looked fresh, its record was rewritten before its fit, and neither warning ever fired."""
    monkeypatch.setenv("HOME", str(tmp_path))
    torch.manual_seed(0)
    model, paths = DBN([6, 4, 3]), ["~/l0.pt", "~/l1.pt"]
    assert _pretrain(model, paths, 1) == []
    assert (tmp_path / "l1.pt.features.json").is_file()
    messages = _pretrain(model, paths, 2)
    assert len(messages) == 1
    assert messages[0].startswith("DBN.pretrain: layer 1 resumes its checkpoint '~/l1.pt' (step 4), a run on the "
                                  "features of layer 0 as they were before this call trained that layer")


def test_a_command_words_the_warning_in_its_own_flags_and_the_call_wording_comes_back(tmp_path):
    """``hybridpgm train dbm --resume`` showed the API's advice (overwrite=True) to a CLI user; the recipe words
    it for the command now (worded_for), and only inside its block."""
    from hybridpgm.energy.greedy_stages import worded_for

    torch.manual_seed(0)
    model, paths = DBN([6, 4, 3]), [tmp_path / "l0.pt", tmp_path / "l1.pt"]
    _pretrain(model, paths, 1)
    with worded_for("train dbn --resume", "use --overwrite"):
        [message] = _pretrain(model, paths, 2)
    assert message.startswith("train dbn --resume: layer 1 resumes its checkpoint") and "before this run " in message
    assert message.endswith("to retrain the layers above on the new features, use --overwrite")
    [message] = _pretrain(model, paths, 3)
    assert message.startswith("DBN.pretrain: layer 1") and message.endswith("(overwrite=True retrains every layer)")


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_rank_zero_alone_warns(rank, tmp_path, monkeypatch):
    """Audit: the warning spoke on every rank of a torchrun job (W copies of it), where fit's own messages speak on
    rank 0 alone; rank 1 (faked, as tests/train fakes ranks) now keeps quiet, rank 0 still warns."""
    from hybridpgm.energy.greedy_stages import GreedyStages
    from hybridpgm.train import distributed

    torch.manual_seed(0)
    paths = [tmp_path / "l0.pt", tmp_path / "l1.pt"]
    _pretrain(DBN([6, 4, 3]), paths, 1)
    stages = GreedyStages(paths, 2, "DBN", {"collective_timeout": 30.0})
    stages.trained_below = 0  # layer 0 trained further in this call
    asked = []
    monkeypatch.setattr(distributed, "current", lambda timeout_s=None: asked.append(timeout_s) or
                        distributed.DistributedContext(rank=rank, world_size=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert stages.check_resume(1) == 4
    messages = [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]
    assert len(messages) == (1 if rank == 0 else 0)
    if rank == 0:
        assert messages[0].startswith(f"DBN.pretrain: layer 1 resumes its checkpoint {str(paths[1])!r} (step 4)")
    assert asked == [30.0]  # the group fit made (or makes, with the timeout the stages give fit)


@pytest.fixture
def failing_layer_one(monkeypatch):
    """``fail(width, after)``: CD steps on batches of ``width`` features (a layer above the first) raise a
    RuntimeError after ``after`` of them; ``fail(None)`` turns it off."""
    from hybridpgm.infer.contrastive_divergence import ContrastiveDivergence

    real, plan = ContrastiveDivergence.loss_and_gradients, {"width": None, "left": 0}

    def step(self, player, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if x.shape[-1] == plan["width"]:
            plan["left"] -= 1
            if plan["left"] < 0:
                raise RuntimeError("injected failure")
        return real(self, player, batch)

    monkeypatch.setattr(ContrastiveDivergence, "loss_and_gradients", step)
    return lambda width, after=0: plan.update(width=width, left=after)


@pytest.mark.parametrize("kind, first_fails", [("DBN", False), ("DBM", False), ("DBN", True)])
def test_a_call_after_one_that_failed_above_a_layer_it_trained_further_warns(kind, first_fails, tmp_path,
                                                                            failing_layer_one):
    """Audit: a call that trained layer 0 further (epochs 1 -> 2) and failed in layer 1 left layer 1's checkpoint a
    run on two sets of features; the next call found layer 0 finished (no step, so nothing said the features
    changed) and resumed it silently.  Layer 1's record (layer 0's step 4, written when it started, and again
    when it finished) now tells; once that call finished layer 1, a call that trains nothing says nothing.
    ``first_fails``: the first call failed in layer 1 too (its record is the one written when it started)."""
    torch.manual_seed(0)
    model = DBN([6, 4, 3]) if kind == "DBN" else DBM([6, 4, 3])
    paths = [tmp_path / "l0.pt", tmp_path / "l1.pt"]
    if first_fails:
        failing_layer_one(4, after=1)
        with pytest.raises(RuntimeError, match="injected failure"):
            _pretrain(model, paths, 1, checkpoint_every=1)
    else:
        assert _pretrain(model, paths, 1) == []
    failing_layer_one(4, after=1)  # layer 1's second step of the call
    with pytest.raises(RuntimeError, match="injected failure"):
        _pretrain(model, paths, 2, checkpoint_every=1)  # warns as before (layer 0 trained in that call)
    failing_layer_one(None)
    messages = _pretrain(model, paths, 2, checkpoint_every=1)
    assert messages == [f"{kind}.pretrain: layer 1 resumes its checkpoint {str(paths[1])!r} "
                        f"(step {2 if first_fails else 5}), a run on the "
                        "features of layer 0 at its step 4, which an earlier call trained further (to step 8): it "
                        "goes on from there on other inputs, which no greedy pretraining does; to retrain the "
                        "layers above on the new features, remove their checkpoints (overwrite=True retrains every "
                        "layer)"]
    from hybridpgm.energy.greedy_stages import record_path

    assert json.loads(record_path(paths[1]).read_text()) == {"layer_below_step": 8}
    assert _pretrain(model, paths, 2, checkpoint_every=1) == []


def test_a_checkpoint_without_a_record_resumes_without_the_comparison(tmp_path, failing_layer_one):
    """A checkpoint written before the record was kept (here: its record removed) resumes as before, silently."""
    from hybridpgm.energy.greedy_stages import record_path

    torch.manual_seed(0)
    model, paths = DBN([6, 4, 3]), [tmp_path / "l0.pt", tmp_path / "l1.pt"]
    _pretrain(model, paths, 1)
    failing_layer_one(4, after=1)
    with pytest.raises(RuntimeError, match="injected failure"):
        _pretrain(model, paths, 2, checkpoint_every=1)
    failing_layer_one(None)
    record_path(paths[1]).unlink()
    assert _pretrain(model, paths, 2, checkpoint_every=1) == []


@pytest.mark.parametrize("model", ["dbm", "dbn"])
def test_the_command_run_after_a_failed_resume_warns_in_its_own_words(model, tmp_path, capsys, monkeypatch,
                                                                      failing_layer_one):
    """``hybridpgm train dbm|dbn --resume`` after a run that trained stage 0 further and failed in stage 1 (run as the
    command: ``main()`` reading ``sys.argv``): one warning line, worded for the command."""
    from hybridpgm.cli import main

    args = ["hybridpgm", "train", model, "--batch-size", "512", "--hidden", "6", "4", "--gibbs-steps", "2",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path)] + (["--chains", "10", "--ais-chains", "10",
            "--ais-steps", "50"] if model == "dbm" else [])

    def command(*more):
        monkeypatch.setattr(sys, "argv", [*args, *more])
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return main()

    assert command("--epochs", "1") == 0
    failing_layer_one(6)  # stage 1 (6 features in) fails at its first step of the run
    with pytest.raises(RuntimeError, match="injected failure"):
        command("--epochs", "2", "--resume")
    failing_layer_one(None)
    capsys.readouterr()
    assert command("--epochs", "2", "--resume") == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert len(warned) == 1
    checkpoint = tmp_path / ("checkpoint-stage1.pt" if model == "dbm" else "checkpoint.pt")
    assert warned[0].startswith(f"hybridpgm: warning: train {model} --resume: layer 1 resumes its checkpoint "
                                f"{str(checkpoint)!r} (step 3), a run on the features of "
                                "layer 0 at its step 3, which an earlier run trained further (to step 6): ")
    assert warned[0].endswith("or train with --overwrite instead of --resume (every stage afresh)")
