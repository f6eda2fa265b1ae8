"""A :class:`~hybridpgm.data.DynamicBinarized` read by torch's own DataLoader, and by hybridpgm's.

Before, its ``__getitems__`` returned the batch already collated, ``x_bin[B, D]`` or ``(x_bin, y)``, flagged for
hybridpgm's ``fit`` and ``data_loader`` only: torch's DataLoader passed it to ``default_collate`` as a list of
examples, which raised ``stack expects each tensor to be equal size`` with labels (``Trying to resize storage that
is not resizable`` in a worker) and re-stacked the rows without (THREADS audit, session 36).  It now returns the
list of examples, carrying the batch drawn at once, which hybridpgm's collation takes as it is."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Subset, default_collate

from hybridpgm.data import DynamicBinarized, data_loader
from hybridpgm.data.binarize import DrawnExamples
from hybridpgm.train.batches import fetch_batch


def _data(labels):
    x = torch.rand(10, 6, generator=torch.Generator().manual_seed(0))
    return DynamicBinarized(x, torch.arange(10) if labels else None)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("labels", [False, True])
def test_a_torch_dataloader_collates_the_drawn_examples(workers, labels):
    """Fails before with labels (any ``num_workers``): torch's raw collate errors."""
    batches = list(DataLoader(_data(labels), batch_size=4, num_workers=workers))
    assert len(batches) == 3
    for i, batch in enumerate(batches):
        x, y = batch if labels else (batch, None)
        rows = min(4, 10 - 4 * i)
        assert x.shape == (rows, 6) and set(x.unique().tolist()) <= {0.0, 1.0}
        assert y is None or y.tolist() == list(range(4 * i, 4 * i + rows))


@pytest.mark.parametrize("labels", [False, True])
def test_the_examples_are_those_of_the_batch_drawn_at_once(labels):
    """Fails before: ``__getitems__`` returned the batch, not a list of examples; the examples are
    ``__getitem__``'s (a tensor, or an ``(x, y)`` pair) and ``default_collate`` stacks them back into the batch."""
    data = _data(labels)
    torch.manual_seed(0)
    examples = data.__getitems__([7, 1, 4])
    assert isinstance(examples, DrawnExamples) and type(examples.batch) is type(data[0]) and len(examples) == 3
    assert type(examples[0]) is type(data[0])
    collated = default_collate(examples)
    batch = (examples.batch,) if not labels else examples.batch
    for got, want in zip((collated,) if not labels else collated, batch):
        assert torch.equal(got, want)
    torch.manual_seed(0)
    redrawn = data.draw(torch.tensor([7, 1, 4]))  # the same draws, from a list of indices or a tensor
    assert all(torch.equal(a, b) for a, b in zip(batch, redrawn if labels else (redrawn,)))
    again = pickle.loads(pickle.dumps(examples))
    assert isinstance(again, DrawnExamples) and len(again) == 3 and type(again.batch) is type(examples.batch)


@pytest.mark.parametrize("labels", [False, True])
def test_fit_and_data_loader_take_the_batch_as_drawn(labels):
    """Guard (passes before and after): ``fit``'s batches are the draws of one ``torch.bernoulli`` over the
    indexed rows, under the same global seed as before (a Subset's too), and ``data_loader`` gives the batch as
    drawn (a tuple with labels, where ``default_collate`` would give a list)."""
    data = _data(labels)
    index = torch.tensor([3, 0, 9, 5])
    for dataset, rows in ((data, index), (Subset(data, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), 9 - index)):
        torch.manual_seed(1)
        want = torch.bernoulli(data.x[rows])
        torch.manual_seed(1)
        got = fetch_batch(dataset, index)
        assert torch.equal(got[0] if labels else got, want)
        assert not labels or torch.equal(got[1], rows)
    batch = next(iter(data_loader(data, 4)))
    assert isinstance(batch, tuple if labels else torch.Tensor)
