"""A dataset keeping its own random generator resumes exactly when it has state_dict/load_state_dict
(hybridpgm.train.dataset_states)."""

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError, TrainingWarning
from hybridpgm.train.checkpoint import load_checkpoint


class _OwnGenerator(torch.utils.data.Dataset):
    """Twelve rows, each read with noise from the dataset's own seeded generator (a reproducible augmentation)."""

    def __init__(self):
        self.x = torch.arange(24.0).reshape(12, 2)
        self.generator = torch.Generator().manual_seed(5)
        self.drawn = []

    def __len__(self):
        return 12

    def __getitem__(self, index):
        noise = torch.randn((), generator=self.generator)
        self.drawn.append(noise.item())
        return self.x[index] + noise


class _Stateful(_OwnGenerator):
    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


class _Regression:
    def __init__(self, setup=False):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(2, 1)
        if setup:  # an objective reading a first batch before the optimizers are built, as SVIObjective does
            self.setup = lambda batch: None

    def players(self):
        return {"main": list(self.module.parameters())}

    def loss(self, player, batch):
        return (self.module(batch).squeeze(-1) - batch[:, 0]).pow(2).mean()


def _run(dataset_class, path, setup, **options):
    dataset, objective = dataset_class(), _Regression(setup)
    options = {"device": "cpu", **options}
    hybridpgm.fit(objective, dataset, checkpoint=path, epochs=3, batch_size=4, seed=0, progress=False, **options)
    return dataset.drawn, objective.module.weight.detach().clone()


@pytest.mark.parametrize("setup", [False, True], ids=["plain", "with setup"])
def test_a_dataset_with_state_dict_resumes_its_own_generator(tmp_path, setup):
    """Before, only the global RNGs were saved: the resumed run replayed the first draws of the dataset's
    generator (the noise of steps 0-1 again at steps 2-3)."""
    drawn, weight = _run(_Stateful, tmp_path / "whole.pt", setup)
    first, _ = _run(_Stateful, tmp_path / "cut.pt", setup, max_steps=2)
    rest, resumed_weight = _run(_Stateful, tmp_path / "cut.pt", setup)
    skipped = 4 if setup else 0  # setup's read of the first batch, which the resumed run repeats
    assert first + rest[skipped:] == drawn
    assert torch.equal(resumed_weight, weight)
    saved = load_checkpoint(tmp_path / "cut.pt")["dataset"]
    assert saved["class"].endswith("._Stateful") and len(saved["states"]) == 1


def test_a_dataset_without_state_dict_is_not_saved_and_resumes_as_before(tmp_path):
    _run(_OwnGenerator, tmp_path / "cut.pt", False, max_steps=2)
    assert "dataset" not in load_checkpoint(tmp_path / "cut.pt")
    rest, _ = _run(_OwnGenerator, tmp_path / "cut.pt", False)
    assert rest[:8] == _run(_OwnGenerator, tmp_path / "new.pt", False)[0][:8]  # its generator starts again


def test_a_saved_state_the_dataset_cannot_take_is_warned_of_or_refused(tmp_path):
    for name in ("cut.pt", "other.pt"):
        _run(_Stateful, tmp_path / name, False, max_steps=2)
    with pytest.warns(TrainingWarning, match=r"holds the state of the dataset .*_Stateful, but this run's dataset "
                                             r"_OwnGenerator has no state_dict/load_state_dict: its own random streams "
                                             r"start afresh"):
        _run(_OwnGenerator, tmp_path / "cut.pt", False, max_steps=3)

    class _Refusing(_Stateful):
        def load_state_dict(self, state):
            raise KeyError("seed")

    with pytest.raises(CheckpointError, match=r"other.pt'.*_Refusing.load_state_dict refused the saved state of "
                                              r".*_Stateful: KeyError: 'seed'"):
        _run(_Refusing, tmp_path / "other.pt", False, max_steps=3)


def test_each_rank_takes_its_own_saved_state_or_rank_0s_on_another_number_of_ranks():
    from hybridpgm.train.dataset_states import load_dataset_state

    saved = {"class": "x._Stateful", "states": []}
    for seed in (1, 2):
        saved["states"].append(_Stateful().state_dict())
        saved["states"][-1]["generator"] = torch.Generator().manual_seed(seed).get_state()
    for rank, world_size, seed in ((0, 2, 1), (1, 2, 2), (1, 3, 1), (2, 3, 1)):
        dataset = _Stateful()
        load_dataset_state("run.pt", dataset, saved, rank, world_size)
        assert torch.equal(dataset.generator.get_state(), torch.Generator().manual_seed(seed).get_state())
    with pytest.raises(CheckpointError, match=r"^checkpoint 'run.pt': its 'dataset' entry is not a dict with a "
                                              r"non-empty list of 'states'$"):
        load_dataset_state("run.pt", _Stateful(), {"class": "x", "states": []}, 0, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="resumes a fit on CUDA")
def test_a_fit_on_cuda_gives_the_dataset_its_state_on_the_cpu(tmp_path):
    """fit(device='cuda') reads its checkpoint onto CUDA, and a CPU generator takes only a CPU byte tensor."""
    drawn, _ = _run(_Stateful, tmp_path / "whole.pt", False, device="cuda")
    first, _ = _run(_Stateful, tmp_path / "cut.pt", False, max_steps=2, device="cuda")
    rest, _ = _run(_Stateful, tmp_path / "cut.pt", False, device="cuda")
    assert first + rest == drawn
