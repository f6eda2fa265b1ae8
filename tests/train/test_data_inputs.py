"""What fit accepts as data (hybridpgm.train.data_inputs): lists of per-example tensors, empty data, the examples
a run on several ranks leaves out, and the refusals of a DataLoader, an array and a dataset without __len__."""

import warnings

import numpy as np
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError, DataError, TrainingWarning
from hybridpgm.train import distributed, trainer
from hybridpgm.train.batches import BatchStream, TensorData
from hybridpgm.train.distributed import DistributedContext
from tests.train.helpers import BatchRecorder


def _fit(data, objective=None, **options):
    options = {"batch_size": 16, "progress": False, "device": "cpu", "seed": 0, **options}
    return hybridpgm.fit(objective or BatchRecorder(), data, **options)


def test_a_list_of_per_example_tensors_is_refused_with_what_to_pass():
    """Before, 100 images of 8 x 8 in a list were read as 100 fields of 8 examples: one step on rows of image 0."""
    images = [torch.full((8, 8), float(i)) for i in range(100)]
    objective = BatchRecorder()
    with pytest.raises(DataError, match=r"^data is a list of 100 tensors of shape \(8, 8\): fit reads a list or tuple "
                                        r"of tensors as fields .*100 fields of 8 examples.*Examples: pass "
                                        r"torch.stack\(data\), one tensor of shape \(100, 8, 8\); fields: pass them as "
                                        r"a tuple$"):
        _fit(images, objective)
    assert objective.seen == []
    with pytest.raises(DataError, match=r"list of 3 tensors of shape \(\)"):  # 0-d examples
        _fit([torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)])
    stacked = BatchRecorder()
    assert _fit(torch.stack(images), stacked, shuffle=False).steps == 7  # 100 examples
    assert torch.equal(stacked.seen[0], torch.stack(images[:16]))


def test_lists_and_tuples_of_fields_keep_working():
    x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    for data in ([x, y], [x, x + 1], (x, y), tuple(torch.zeros(8, 8) for _ in range(100))):
        objective = BatchRecorder()
        _fit(data, objective, shuffle=False)
        assert [len(b) for b in objective.seen] == [len(data)]  # one batch of every field
        assert objective.seen[0][0].shape[0] == data[0].shape[0]


def test_tensors_of_other_lengths_are_named_in_a_short_message():
    """Before, the message listed all 50,000 shapes (400,056 characters)."""
    sequences = [torch.zeros(3 + i % 5, 2) for i in range(50_000)]
    with pytest.raises(DataError) as refused:
        _fit(sequences)
    message = str(refused.value)
    assert len(message) < 400
    assert message.startswith("data tensors disagree on the number of examples (their first dimension): 50000 "
                              "tensors of shapes (3, 2), (4, 2), (5, 2), (6, 2), (7, 2) and 49995 more; a list of one "
                              "tensor per example is no data set: pad them to one shape and torch.stack them")


class _Empty(torch.utils.data.Dataset):
    def __len__(self):
        return 0

    def __getitem__(self, index):
        raise IndexError(index)


@pytest.mark.parametrize("data, name", [(_Empty(), "_Empty"), (torch.utils.data.TensorDataset(torch.zeros(0, 6)),
                                                                 "TensorDataset"), (torch.zeros(0, 6), "TensorData")],
                         ids=["Dataset", "TensorDataset", "tensor"])
def test_empty_data_is_one_data_error_before_an_objective_reads_a_first_batch(data, name):
    """Before, an objective with ``setup`` (SVIObjective) met torch's IndexError from default_collate([]), and
    the others a message about "fewer than the 1 ranks"."""
    from hybridpgm import VAE
    from hybridpgm.infer import SVIObjective

    vae = VAE(6, 2, hidden=(4,))
    for objective in (SVIObjective(vae.model, vae.guide), BatchRecorder()):
        with pytest.raises(DataError, match=rf"^data has no examples \({name} of length 0\): there is nothing to "
                                            "train on$"):
            _fit(data, objective)


class _Stop(Exception):
    pass


def _on_ranks(monkeypatch, rank, world_size):
    """fit as rank ``rank`` of ``world_size``, stopped (``_Stop``) once the data are checked."""
    monkeypatch.setattr(distributed, "current", lambda timeout_s=None: DistributedContext(
        rank=rank, world_size=world_size, device=torch.device("cpu")))

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(trainer, "build_players", stop)


def _never_seen(n, world_size, shuffle, epochs=3):
    seen = set()
    for rank in range(world_size):
        stream = BatchStream(TensorData(torch.arange(n)), 2, seed=0, shuffle=shuffle, rank=rank, world_size=world_size)
        for step in range(epochs * stream.batches_per_epoch):
            seen.update(stream.batch(step).tolist())
    return sorted(set(range(n)) - seen)


def test_examples_never_seen_on_several_ranks_without_shuffle_are_warned_of_once_on_rank_0(monkeypatch):
    """Before, with shuffle=False the last N mod world_size examples were left out of every epoch, silently."""
    assert _never_seen(10, 4, shuffle=False) == [8, 9] and _never_seen(10, 4, shuffle=True) == []
    _on_ranks(monkeypatch, 0, 4)
    with pytest.warns(TrainingWarning, match=r"^with shuffle=False on 4 ranks, 2 of the 10 examples are never seen: "
                                             r"each rank takes floor\(10/4\) = 2 examples per epoch in the data's "
                                             r"order, which leaves out examples 8, 9 \(the last 2\) in every epoch; "
                                             r"pass shuffle=True .* or a number of examples divisible by 4$") as caught:
        with pytest.raises(_Stop):
            _fit(torch.arange(10.0), shuffle=False)
    assert len([w for w in caught if issubclass(w.category, TrainingWarning)]) == 1
    assert caught[0].filename == __file__  # at the caller's line
    for rank, n, shuffle in ((1, 10, False), (0, 10, True), (0, 12, False)):  # rank 1; shuffled; divisible
        _on_ranks(monkeypatch, rank, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("error", TrainingWarning)
            with pytest.raises(_Stop):
                _fit(torch.arange(float(n)), shuffle=shuffle)
    _on_ranks(monkeypatch, 0, 4)
    with pytest.raises(DataError, match=r"^data has 3 examples, fewer than the 4 ranks \(torchrun\): each rank needs "
                                        "at least one$"):
        _fit(torch.arange(3.0))


def test_a_data_loader_is_refused_naming_what_fit_would_not_use():
    from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

    def pad(batch):
        return torch.stack(batch)

    dataset = TensorDataset(torch.zeros(20, 2))
    loader = DataLoader(dataset, batch_size=4, collate_fn=pad, drop_last=True,
                        sampler=WeightedRandomSampler(torch.ones(20), 20))
    with pytest.raises(ConfigError, match=r"^fit takes the dataset, not a DataLoader: .*pass loader.dataset and the "
                                          r"loader's batching: fit\(objective, loader.dataset, batch_size=4, "
                                          r"drop_last=True\)\. fit would not use its sampler WeightedRandomSampler "
                                          r"\(.*weight the examples in the loss.*\); its collate_fn pad \(give the "
                                          r"dataset a __getitems__\(indices\) that returns the batch"):
        _fit(loader)
    with pytest.raises(ConfigError, match=r"fit\(objective, loader.dataset, batch_size=5, shuffle=False\)$"):
        _fit(DataLoader(dataset, batch_size=5))
    with pytest.raises(ConfigError, match=r"^data_loader takes the dataset, not a DataLoader: pass loader.dataset$"):
        hybridpgm.data.data_loader(loader)


class _NoLen(torch.utils.data.Dataset):
    def __getitem__(self, index):
        return torch.zeros(2)


def test_an_array_and_a_dataset_without_len_are_refused_saying_what_to_do(tmp_path):
    memmap = np.memmap(tmp_path / "rows.dat", dtype=np.float32, mode="w+", shape=(4, 2))
    for array in (np.zeros((4, 2), dtype=np.float32), memmap):
        with pytest.raises(ConfigError, match=r"got (ndarray|memmap): pass a tensor \(torch.from_numpy\(array\) shares "
                                              r"a NumPy array's memory, no copy"):
            _fit(array)
    with pytest.raises(ConfigError, match=r"got _NoLen, a Dataset without __len__: fit needs the number of examples"):
        _fit(_NoLen())


def test_a_data_loader_with_workers_is_told_that_fit_reads_in_one_process():
    """INPUTS audit (session 39, finding 9): the refusal of a loader with ``num_workers`` / ``pin_memory`` /
    ``persistent_workers`` did not mention them, and the suggested ``fit(objective, loader.dataset, ...)`` reads
    every batch in the training process (fit has no workers): a decoding-heavy ``__getitem__`` then ran in one
    process with no word of it."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(20, 2)), batch_size=4, num_workers=2, persistent_workers=True,
                        pin_memory=True)
    with pytest.raises(ConfigError, match=r"fit would not use its num_workers=2 \(persistent_workers=True\) \(fit "
                                          r"reads every batch in the training process.*; its pin_memory=True"):
        _fit(loader)
