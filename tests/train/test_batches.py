import pytest
import torch

from hybridpgm.errors import ConfigError, DataError
from hybridpgm.train.batches import BatchStream, TensorData
from tests.data.ready_batches import DictBatch, TupleBatch
from tests.train.helpers import BatchRecorder


def _all_indices(stream, epoch):
    steps = range(epoch * stream.batches_per_epoch, (epoch + 1) * stream.batches_per_epoch)
    return torch.cat([stream.batch(s) for s in steps])


def test_each_epoch_is_a_seeded_permutation():
    data = TensorData(torch.arange(10))
    stream = BatchStream(data, 3, seed=1)
    assert stream.batches_per_epoch == 4
    e0, e1 = _all_indices(stream, 0), _all_indices(stream, 1)
    assert sorted(e0.tolist()) == list(range(10)) == sorted(e1.tolist())
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, _all_indices(BatchStream(data, 3, seed=1), 0))
    assert not torch.equal(e0, _all_indices(BatchStream(data, 3, seed=2), 0))


def test_rank_shards_are_disjoint_and_equal_sized():
    data = TensorData(torch.arange(11))
    shards = [_all_indices(BatchStream(data, 2, seed=0, rank=r, world_size=2), 0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_drop_last_and_no_shuffle():
    stream = BatchStream(TensorData(torch.arange(7)), 3, seed=0, shuffle=False, drop_last=True)
    assert stream.batches_per_epoch == 2
    assert stream.batch(0).tolist() == [0, 1, 2] and stream.batch(2).tolist() == [0, 1, 2]


def test_drop_last_with_no_full_batch_is_refused():
    """Before, the one incomplete batch was trained on every step, as if drop_last were False."""
    with pytest.raises(ConfigError, match="drop_last=True leaves no batch: batch_size 8 is larger than the 7 "):
        BatchStream(TensorData(torch.arange(7)), 8, seed=0, drop_last=True)
    with pytest.raises(ConfigError, match="than the 3 examples per rank"):
        BatchStream(TensorData(torch.arange(7)), 4, seed=0, drop_last=True, rank=1, world_size=2)


def test_finite_data_whose_sum_overflows_is_accepted():
    """The one-sum screen cannot prove such data bad: the exact scan decides."""
    huge = torch.full((4, 3), 3e38)
    assert TensorData(huge, torch.zeros(4)).tensors[0] is huge
    assert len(TensorData(torch.tensor([[60000.0] * 4] * 3, dtype=torch.float16))) == 3


def test_bad_tensor_data():
    with pytest.raises(DataError, match="NaN/inf"):
        TensorData(torch.tensor([1.0, float("nan")]))
    for bad in (float("inf"), -float("inf")):
        with pytest.raises(DataError, match="holds 1 NaN/inf value\\(s\\), the first in row 2"):
            TensorData(torch.tensor([[1.0], [-2.0], [bad]], dtype=torch.float16))
    with pytest.raises(DataError, match="disagree"):
        TensorData(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(DataError, match="fewer than"):
        BatchStream(TensorData(torch.zeros(1)), 1, seed=0, world_size=2)


def _xy(n=20):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g), torch.randn(n, generator=g)


def test_a_subset_and_a_stack_dataset_are_collated_as_torch_collates_them():
    """Before, a dataset with ``__getitems__`` was taken to return a ready batch: a Subset (random_split)
    or a StackDataset, which return torch's list of examples, gave a list of B tuples."""
    from torch.utils.data import StackDataset, TensorDataset, random_split

    x, y = _xy()
    train, _ = random_split(TensorDataset(x, y), [16, 4], generator=torch.Generator().manual_seed(0))
    stream = BatchStream(train, 4, seed=0, shuffle=False)
    xb, yb = stream.batch(0)
    rows = list(train.indices[:4])
    assert xb.shape == (4, 3) and yb.shape == (4,)
    assert torch.equal(xb, x[rows]) and torch.equal(yb, y[rows])
    xb, yb = BatchStream(StackDataset(x, y), 5, seed=0, shuffle=False).batch(1)
    assert torch.equal(xb, x[5:10]) and torch.equal(yb, y[5:10])


def test_hybridpgm_datasets_and_their_subsets_give_their_own_batches():
    from torch.utils.data import Subset, TensorDataset

    from hybridpgm.data import DynamicBinarized
    from hybridpgm.train.batches import getitems_returns_batch

    x, y = _xy()
    # torch's lists of examples, carrying the batch (tests/train/test_batches_dataloader.py)
    assert not getitems_returns_batch(TensorData(x, y))
    assert not getitems_returns_batch(DynamicBinarized(x.sigmoid()))
    assert not getitems_returns_batch(Subset(Subset(TensorData(x, y), range(10)), [1, 2]))
    assert not getitems_returns_batch(Subset(TensorDataset(x, y), [1, 2]))
    xb, yb = BatchStream(Subset(TensorData(x, y), [3, 1, 7]), 3, seed=0, shuffle=False).batch(0)
    assert torch.equal(xb, x[[3, 1, 7]]) and torch.equal(yb, y[[3, 1, 7]])


class _ListBatch(TupleBatch):
    """A ready batch given as a list ``[x[idx], y[idx]]``: taken for torch's list of examples."""

    def __getitems__(self, idx):
        return list(super().__getitems__(idx))


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_fit_uses_a_ready_batch_from_a_custom_getitems_as_it_is(kind):
    """Found by a review: every ``__getitems__`` result was passed to default_collate unless the class set
    getitems_returns_batch = True, so a custom dataset returning (x[idx], y[idx]) or a dict of batched
    tensors crashed fit with a raw torch error."""
    import hybridpgm

    data = TupleBatch() if kind == "tuple" else DictBatch()
    xb = BatchStream(data, 4, seed=0, shuffle=False).batch(0)
    if kind == "tuple":
        assert isinstance(xb, tuple) and torch.equal(xb[0], data.x[:4]) and torch.equal(xb[1], data.y[:4])
    else:
        assert torch.equal(xb["x"], data.x[:4]) and torch.equal(xb["y"], data.y[:4])
    objective = BatchRecorder()
    before = objective.module.weight.detach().clone()
    hybridpgm.fit(objective, data, epochs=2, batch_size=3, shuffle=True, progress=False, device="cpu", seed=0)
    assert objective.seen and not torch.equal(before, objective.module.weight.detach())
    for batch in objective.seen:
        x, y = batch if kind == "tuple" else (batch["x"], batch["y"])
        assert x.shape[1:] == (2,) and y.shape == x.shape[:1] and torch.equal(x, data.x[y])


def test_a_getitems_list_of_the_wrong_length_is_a_data_error_saying_what_to_do():
    data = _ListBatch()
    with pytest.raises(DataError, match=r"_ListBatch.*list of 2 items for 4 indices.*tuple or dict.*"
                                        r"getitems_returns_batch = True"):
        BatchStream(data, 4, seed=0, shuffle=False).batch(0)
    import hybridpgm

    with pytest.raises(DataError, match="_ListBatch"):
        hybridpgm.fit(BatchRecorder(), data, epochs=1, batch_size=4, progress=False, device="cpu", seed=0)
    type(data).getitems_returns_batch = True  # the opt-in marks a ready batch of any type, a list too
    try:
        xb, yb = BatchStream(data, 4, seed=0, shuffle=False).batch(0)
        assert torch.equal(xb, data.x[:4]) and torch.equal(yb, data.y[:4])
    finally:
        del type(data).getitems_returns_batch


class _Iterable(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(torch.zeros(8, 2))


class _IterableWithLen(_Iterable):
    def __len__(self):
        return 8


@pytest.mark.parametrize("data", [_Iterable(), _IterableWithLen()], ids=["without __len__", "with __len__"])
def test_an_iterable_dataset_is_refused_by_name_with_or_without_len(data):
    """Before, an IterableDataset with ``__len__`` passed as map-style and fit raised torch's raw
    NotImplementedError ("Subclasses of Dataset should implement __getitem__")."""
    import hybridpgm
    from hybridpgm.train.data_inputs import as_dataset

    name = type(data).__name__
    with pytest.raises(ConfigError, match=f"map-style Dataset, got {name} \\(an IterableDataset: fit draws examples "
                                          "by index"):
        as_dataset(data)
    with pytest.raises(ConfigError, match=f"got {name} "):
        hybridpgm.fit(BatchRecorder(), data, batch_size=4, progress=False, device="cpu", seed=0)


class _Sequences(torch.utils.data.Dataset):
    """Eight sequences of lengths 3, 4, 3, 4, ...: torch's default_collate cannot stack them."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.zeros(3 + index % 2, 2)


class _Rows(torch.utils.data.Dataset):
    """Rows of a data frame, one pandas Series per example: a type default_collate does not take."""

    def __init__(self):
        import pandas

        self.frame = pandas.DataFrame({"a": [0.0, 1.0, 2.0], "b": [3.0, 4.0, 5.0]})

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return self.frame.iloc[index]


def test_examples_that_cannot_be_collated_are_a_data_error_naming_the_dataset_the_indices_and_the_remedy():
    """Before, torch's raw RuntimeError ("stack expects each tensor to be equal size") or TypeError
    ("default_collate: batch must contain tensors, ...; found <class 'pandas.Series'>") came out of fit."""
    import hybridpgm

    remedy = (r"Return tensors of one shape from __getitem__ \(a pandas row: torch.as_tensor\(row.to_numpy\(\)\)\), or "
              r"give {} a __getitems__\(indices\) that returns the batch itself \(a tuple, dict or tensor: padded "
              r"sequences and their lengths, say\), which fit takes as it is$")
    with pytest.raises(DataError, match=r"^cannot collate examples 0, 1, 2, 3, 4 and 1 more of _Sequences into a batch "
                                        r"with torch's default_collate \(fit collates as a DataLoader without a "
                                        r"collate_fn does\): stack expects each tensor to be equal size.*\. "
                                        + remedy.format("_Sequences")) as refused:
        BatchStream(_Sequences(), 6, seed=0, shuffle=False).batch(0)
    assert isinstance(refused.value.__cause__, RuntimeError)
    with pytest.raises(DataError, match=r"^cannot collate examples 0, 1, 2 of _Rows .*found <class "
                                        r"'pandas.*Series'>\. " + remedy.format("_Rows")):
        hybridpgm.fit(BatchRecorder(), _Rows(), batch_size=4, progress=False, device="cpu", seed=0, shuffle=False)


class _Keyed(torch.utils.data.Dataset):
    """A ready-batch dataset over examples kept in a dict keyed by int, recording the indices it is given."""

    getitems_returns_batch = True

    def __init__(self):
        self.store, self.given = {i: torch.tensor([float(i)]) for i in range(6)}, []

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.store[index]

    def __getitems__(self, indices):
        self.given.append(indices)
        return torch.stack([self.store[i] for i in indices])


def test_a_users_getitems_gets_a_list_of_ints_as_from_torch():
    """Before, fit handed a LongTensor to a ready-batch ``__getitems__`` where torch's DataLoader (and
    data_loader) hand a list of ints: a dict keyed by int raised KeyError: tensor(8)."""
    import hybridpgm

    data = _Keyed()
    assert torch.equal(BatchStream(data, 4, seed=0, shuffle=False).batch(1), torch.tensor([[4.0], [5.0]]))
    hybridpgm.fit(BatchRecorder(), data, batch_size=4, progress=False, device="cpu", seed=0)
    assert data.given[0] == [4, 5] and len(data.given) == 3
    assert all(type(given) is list and all(type(i) is int for i in given) for given in data.given)
    assert sorted(i for given in data.given[1:] for i in given) == list(range(6))
