"""fetch_batch over torch Subsets of a DynamicBinarized (hybridpgm/train/subset_reads.py): one draw, no list.

Carried since session 37 (CARRYFIX, session 41): ``fit``'s read of a ``Subset(DynamicBinarized)`` (what
``random_split`` makes) went through ``Subset.__getitems__`` to ``DynamicBinarized.__getitems__``, which unbinds the
drawn batch into a list of ``B`` examples (:class:`~hybridpgm.data.binarize.DrawnExamples`) for ``fetch_batch`` to
take the batch back out: 5-15% of the read of a 128 x 784 batch.  Now the indices are composed and drawn at once:
the same one draw from torch's global generator with the same indices, so the batches and the generator's state
after them are the same bits."""

import pytest
import torch
from torch.utils.data import Subset, random_split

import hybridpgm.data.binarize as binarize
from hybridpgm.data.binarize import DynamicBinarized
from hybridpgm.train.batches import fetch_batch
from tests.train.counted_examples import counting_examples


def _subsets():
    x = torch.rand(20, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) * 10
    for data in (DynamicBinarized(x), DynamicBinarized(x, y)):
        yield Subset(data, [7, 3, 11, 0, 5])
        yield Subset(data, torch.tensor([7, 3, 11, 0, 5]))
        yield Subset(Subset(data, [19, 7, 3, 11, 0, 5]), [1, 2, 3, 4, 5])
        yield Subset(data, [-1, 3, -20, 0, 5])  # negative: x[i] counts from the end, as before
        yield random_split(data, [0.5, 0.5], generator=torch.Generator().manual_seed(0))[1]


def _torch_s_read(subset, rows):
    """What torch's DataLoader (and fit, before) read: ``Subset.__getitems__``'s list of examples, its batch."""
    return subset.__getitems__(rows).batch


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return isinstance(b, tuple) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("case", range(10))
def test_a_subset_of_dynamic_binarized_is_drawn_at_once(monkeypatch, case):
    """Fails before: one list of examples per batch (``made == 1``), unbound and thrown away."""
    subset = list(_subsets())[case]
    counted = counting_examples(monkeypatch, binarize)
    fetch_batch(subset, torch.tensor([0, 1, 2, 3, 4]))
    assert counted.made == 0


@pytest.mark.parametrize("case", range(10))
def test_the_draws_are_the_same_bits_as_through_subset_getitems(case):
    """Guard: three batches in a row under a seed equal torch's Subset route, and leave the global generator in
    the same state (the same one draw per batch)."""
    subset = list(_subsets())[case]
    batches = [torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 2]), torch.tensor([1, 1, 0])]
    torch.manual_seed(123)
    got = [fetch_batch(subset, b) for b in batches]
    after = torch.get_rng_state()
    torch.manual_seed(123)
    expected = [_torch_s_read(subset, b.tolist()) for b in batches]
    assert all(_same(g, e) for g, e in zip(got, expected))
    assert torch.equal(after, torch.get_rng_state())


def test_a_subset_subclass_with_its_own_getitems_is_asked():
    """Guard: a Subset subclass's own ``__getitems__`` is what fit reads."""
    class Flipped(Subset):
        def __getitems__(self, indices):
            return [1 - self.dataset[self.indices[i]] for i in indices]

    data = DynamicBinarized(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(fetch_batch(Flipped(data, [1, 0]), torch.tensor([0, 1])), torch.tensor([[1.0, 0.0],
                                                                                             [0.0, 1.0]]))


def test_an_index_past_the_subset_is_an_index_error_as_before():
    data = DynamicBinarized(torch.rand(5, 2))
    with pytest.raises(IndexError):
        fetch_batch(Subset(data, [0, 1]), torch.tensor([0, 2]))
