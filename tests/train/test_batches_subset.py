"""fetch_batch over torch Subsets (random_split) of fit's TensorData: read at once, no list of examples."""

import pytest
import torch
from torch.utils.data import Subset, random_split

import hybridpgm.train.batches as batches
from hybridpgm.train.batches import TensorData, fetch_batch
from tests.train.counted_examples import counting_examples


def _subsets():
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.arange(20) * 10
    one, two = TensorData(x, single=True), TensorData(x, y)
    for data in (one, two):
        yield data, Subset(data, [7, 3, 11, 0]), [7, 3, 11, 0]
        yield data, Subset(data, torch.tensor([7, 3, 11, 0])), [7, 3, 11, 0]
        yield data, Subset(Subset(data, [19, 7, 3, 11, 0]), [1, 2, 3, 4]), [7, 3, 11, 0]
        split = random_split(data, [0.5, 0.5], generator=torch.Generator().manual_seed(0))[1]
        yield data, split, [split.indices[i] for i in range(4)]


@pytest.mark.parametrize("case", range(8))
def test_subset_of_tensor_data_is_read_at_once(monkeypatch, case):
    data, subset, under = list(_subsets())[case]
    counted = counting_examples(monkeypatch, batches)
    got = fetch_batch(subset, torch.tensor([0, 1, 2, 3]))
    assert counted.made == 0  # was one list of 4 examples per batch, unbound and thrown away
    expected = data.rows(under)
    if isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected)
    else:
        assert isinstance(got, tuple) and len(got) == 2
        assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_subset_subclass_with_its_own_getitems_is_asked():
    class Doubled(Subset):
        def __getitems__(self, indices):
            return [self.dataset[self.indices[i]] * 2 for i in indices]

    data = TensorData(torch.arange(6.0).reshape(3, 2), single=True)
    got = fetch_batch(Doubled(data, [2, 0]), torch.tensor([0, 1]))
    assert torch.equal(got, torch.tensor([[8.0, 10.0], [0.0, 2.0]]))


def test_a_subset_with_negative_indices_reads_the_rows_from_the_end():
    """INPUTS audit (session 39, finding 9): a Subset with negative indices over fit's TensorData raised torch's raw
    ``IndexError: index out of range in self`` (``index_select``), where torch's ``TensorDataset`` and
    ``TensorData.__getitem__`` count them from the end."""
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.arange(20) * 10
    got = fetch_batch(Subset(TensorData(x, single=True), [-1, 3, -20]), torch.tensor([0, 1, 2]))
    assert torch.equal(got, x[[19, 3, 0]])
    got = fetch_batch(Subset(TensorData(x, y), [-2, 5]), torch.tensor([0, 1]))
    assert torch.equal(got[0], x[[18, 5]]) and torch.equal(got[1], y[[18, 5]])
