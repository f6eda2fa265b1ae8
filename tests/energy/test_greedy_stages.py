"""Greedy layer-wise pretraining called again to train further (hybridpgm/energy/greedy_stages.py): a layer that
resumes its checkpoint after a layer below trained in the same call is warned of; a preempted pretraining resuming
where it stopped is not."""

import warnings

import pytest
import torch

from hybridpgm.energy import DBM, DBN
from hybridpgm.errors import TrainingWarning


def _data():
    return (torch.rand(32, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()


def _pretrain(model, paths, epochs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.pretrain(_data(), epochs=epochs, checkpoints=paths, batch_size=8, progress=False, seed=0)
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
