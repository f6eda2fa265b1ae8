"""A dataset keeping its own random generator resumes exactly when it has state_dict/load_state_dict
(hybridpgm.train.dataset_states)."""

import re
import warnings

import numpy as np
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


class _NumpyState(_OwnGenerator):
    """NumPy's idiom: its RandomState's state is a tuple holding an array, which a checkpoint cannot hold."""

    def __init__(self):
        super().__init__()
        self.random_state = np.random.RandomState(3)

    def state_dict(self):
        return {"rs": self.random_state.get_state()}

    def load_state_dict(self, state):
        self.random_state.set_state(state["rs"])


class _GeneratorItself(_OwnGenerator):
    def state_dict(self):
        return {"generator": self.generator}

    def load_state_dict(self, state):
        raise AssertionError("never handed a state")


@pytest.mark.parametrize("dataset_class, entry", [(_NumpyState, r"\['rs'\]\[1\] \(a numpy.ndarray\)"),
                                                  (_GeneratorItself, r"\['generator'\] \(a torch.Generator\)")])
def test_a_state_that_is_not_plain_data_is_warned_of_once_and_left_out(tmp_path, dataset_class, entry):
    """Before, the run stopped with a CheckpointError at its first checkpoint write, after its steps had run."""
    with pytest.warns(TrainingWarning) as caught:
        _run(dataset_class, tmp_path / "cut.pt", False, max_steps=5, checkpoint_every=2)
    assert len(caught) == 1
    assert re.search(rf"the state of the dataset .*\.{dataset_class.__name__} is left out of the checkpoints of "
                     rf"'.*cut.pt', so a resume starts its own random streams afresh: {dataset_class.__name__}"
                     rf"\.state_dict\(\){entry} cannot be read back .*; to be carried, a dataset's state must be "
                     r"tensors or plain data", str(caught[0].message))
    saved = load_checkpoint(tmp_path / "cut.pt")
    assert saved["step"] == 5 and "dataset" not in saved
    with pytest.warns(TrainingWarning, match="is left out of the checkpoints") as caught:  # and nothing else
        _run(dataset_class, tmp_path / "cut.pt", False, max_steps=7)
    assert len(caught) == 1 and load_checkpoint(tmp_path / "cut.pt")["step"] == 7


def test_a_state_that_is_not_plain_data_is_not_looked_at_without_a_checkpoint():
    dataset = _GeneratorItself()
    dataset.state_dict = lambda: pytest.fail("state_dict called by a run that writes no checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hybridpgm.fit(_Regression(), dataset, epochs=1, batch_size=4, seed=0, progress=False, device="cpu")


class _ModuleDataset(torch.nn.Module, torch.utils.data.Dataset):
    """An nn.Module holding its data as buffers: its state_dict is the data, not a sampling state."""

    def __init__(self):
        super().__init__()
        self.register_buffer("x", torch.arange(24.0).reshape(12, 2).repeat(100, 1))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index]


def test_a_dataset_that_is_an_nn_module_is_not_saved(tmp_path):
    """Before, its state_dict (its 1,200 rows of data) went into every checkpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hybridpgm.fit(_Regression(), _ModuleDataset(), checkpoint=tmp_path / "cut.pt", max_steps=2, batch_size=4,
                      seed=0, progress=False, device="cpu")
    assert "dataset" not in load_checkpoint(tmp_path / "cut.pt")
    saved = {"class": "x._ModuleDataset", "states": [_ModuleDataset().state_dict()]}  # a checkpoint of fea4d00's
    dataset = _ModuleDataset()
    dataset.x.zero_()
    from hybridpgm.train.dataset_states import load_dataset_state

    with pytest.warns(TrainingWarning, match=r"run's dataset _ModuleDataset is an nn.Module \(whose state_dict is its "
                                             r"parameters and buffers, never loaded as a dataset's state\)"):
        load_dataset_state("run.pt", dataset, saved, 0, 1)
    assert not dataset.x.any()


def test_a_resume_from_a_checkpoint_without_the_datasets_state_is_warned_of(tmp_path):
    """A checkpoint written by a run whose dataset kept no state, resumed with one that does: its generator starts
    afresh (before, silently)."""
    _run(_OwnGenerator, tmp_path / "cut.pt", False, max_steps=2)
    with pytest.warns(TrainingWarning, match=r"^checkpoint '.*cut.pt' holds no state of the dataset: this run's "
                                             r"dataset _Stateful has state_dict/load_state_dict, but its own random "
                                             r"streams start afresh") as caught:
        _run(_Stateful, tmp_path / "cut.pt", False, max_steps=3)
    assert len(caught) == 1
    assert load_checkpoint(tmp_path / "cut.pt")["dataset"]["class"].endswith("._Stateful")  # saved from now on


def test_every_rank_leaves_the_state_out_when_one_ranks_state_is_not_plain_data():
    """Rank 0 alone could not tell: it would save every rank's state and fail at its first write."""
    from hybridpgm.train.dataset_states import carried_dataset

    class _Context:
        def __init__(self, rank):
            self.rank, self.is_main = rank, rank == 0

        def gather_object(self, refused):  # rank 0's state is plain data, rank 1's holds an array
            return [[], ["_NumpyState.state_dict()['rs'][1] (a numpy.ndarray)"]]

    plain = _Stateful()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert carried_dataset(plain, None, _Context(0)) is None  # no checkpoint: not looked at
        assert carried_dataset(plain, "run.pt", _Context(1)) is None
    with pytest.warns(TrainingWarning, match=r"_Stateful is left out of the checkpoints of 'run.pt', so a resume "
                                             r"starts its own random streams afresh: _NumpyState.state_dict\(\)"
                                             r"\['rs'\]\[1\] \(a numpy.ndarray\) cannot be read back"):
        assert carried_dataset(plain, "run.pt", _Context(0)) is None
