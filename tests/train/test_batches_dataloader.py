"""fit's dataset over tensors, :class:`~hybridpgm.train.batches.TensorData`, read by torch's own DataLoader.

Before, its ``__getitems__`` returned the batch already collated (``x[B, D]`` or the tuple ``(x, y)``), flagged
``getitems_returns_batch`` for hybridpgm's ``fit`` and ``data_loader`` only: torch's DataLoader passed it to
``default_collate`` as a list of examples, which raised ``stack expects each tensor to be equal size`` with
labels, ``stack(): argument 'tensors' ... must be tuple of Tensors`` without (the same in a worker; THREADS audit,
session 36).  It now returns the list of examples carrying the batch read at once
(:class:`~hybridpgm.data.binarize.DrawnExamples`, as :class:`~hybridpgm.data.DynamicBinarized` does)."""

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset, default_collate

from hybridpgm.data import data_loader
from hybridpgm.data.binarize import DrawnExamples
from hybridpgm.train.batches import BatchStream, TensorData, fetch_batch


def _tensors(n=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g), torch.arange(n), torch.randn(n, 2, 2, generator=g)


DATASETS = {  # TensorData, and torch's TensorDataset over the same tensors (what a DataLoader gives for it)
    "x": lambda x, y, z: (TensorData(x), x),
    "x, y": lambda x, y, z: (TensorData(x, y), TensorDataset(x, y)),
    "x, y, z": lambda x, y, z: (TensorData(x, y, z), TensorDataset(x, y, z)),
    "(x,)": lambda x, y, z: (TensorData(x, single=False), TensorDataset(x)),
}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return type(a) is type(b) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", list(DATASETS))
def test_a_torch_dataloader_gives_the_batches_of_torchs_tensor_dataset(kind, workers):
    """Fails before (any ``num_workers``): torch's raw collate errors."""
    data, torch_data = DATASETS[kind](*_tensors())
    got = list(DataLoader(data, batch_size=4, num_workers=workers))
    want = list(DataLoader(torch_data, batch_size=4))
    assert len(got) == len(want) == 3
    assert all(_same(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("kind", list(DATASETS))
def test_the_examples_are_those_of_the_batch_read_at_once_and_fit_takes_the_batch(kind):
    """``__getitems__`` gives ``__getitem__``'s examples, which ``default_collate`` stacks back into the batch;
    ``fit`` (:func:`fetch_batch`, from the tensor of indices, a Subset's too) and ``data_loader`` take the batch
    as :meth:`TensorData.rows` reads it."""
    x, y, z = _tensors()
    data, _ = DATASETS[kind](x, y, z)
    examples = data.__getitems__([7, 1, 4])
    assert isinstance(examples, DrawnExamples) and len(examples) == 3
    assert all(_same(e, data[i]) for e, i in zip(examples, [7, 1, 4]))
    batch = data.rows(torch.tensor([7, 1, 4]))
    assert _same(examples.batch, batch)
    collated = default_collate(examples)
    assert _same(collated, batch if isinstance(batch, torch.Tensor) else list(batch))
    assert _same(fetch_batch(data, torch.tensor([7, 1, 4])), batch)
    assert _same(fetch_batch(Subset(data, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), torch.tensor([2, 8, 5])), batch)
    assert _same(next(iter(data_loader(data, batch_size=3, shuffle=False))), data.rows(torch.arange(3)))
    assert _same(BatchStream(data, 3, seed=0, shuffle=False).batch(1), data.rows(torch.arange(3, 6)))
