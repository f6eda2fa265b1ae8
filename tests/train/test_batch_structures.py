"""Batches of every structure torch's ``default_collate`` makes: named tuples, mappings that are not a ``dict``
(:class:`collections.UserDict`, any :class:`collections.abc.Mapping`), and fields that are not tensors (a list of
``B`` strings), trained by ``fit`` as the plain tuple or dict of the same tensors, with and without accumulation."""

import collections
import functools

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.train.batches import batch_size_of, move_to
from hybridpgm.train.micro_batches import split_batch

Pair = collections.namedtuple("Pair", "x y")


class Record(collections.UserDict):
    """A mutable mapping that is not a dict (torch's collate keeps its class)."""


class Frozen(collections.abc.Mapping):
    """A read-only mapping built from a dict (torch's collate keeps its class)."""

    def __init__(self, items):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


def _xy(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1) + 0.1 * torch.randn(n, generator=g)


X, Y = _xy()

#: one example of each structure, from row ``i``
EXAMPLES = {
    "tuple": lambda i: (X[i], Y[i]),
    "namedtuple": lambda i: Pair(X[i], Y[i]),
    "dict": lambda i: {"x": X[i], "y": Y[i]},
    "UserDict": lambda i: Record(x=X[i], y=Y[i]),
    "Mapping": lambda i: Frozen({"x": X[i], "y": Y[i]}),
    "dict with an id first": lambda i: {"id": f"row{i}", "x": X[i], "y": Y[i]},
    "dict with an id last": lambda i: {"x": X[i], "y": Y[i], "id": f"row{i}"},
}


class Examples(torch.utils.data.Dataset):
    def __init__(self, kind):
        self.kind = kind

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return EXAMPLES[self.kind](i)


class Regression:
    """Mean squared error of a linear map; records the type of every (micro-)batch and its ids."""

    def __init__(self):
        torch.manual_seed(0)
        self.module, self.types, self.ids = torch.nn.Linear(3, 1), set(), []

    def players(self):
        return {"fit": list(self.module.parameters())}

    def loss(self, player, batch):
        self.types.add(type(batch))
        if isinstance(batch, (tuple, list)):  # torch collates tuples of examples into a list
            x, y = batch
        else:
            x, y = batch["x"], batch["y"]
            if "id" in batch:  # the ids name the rows of x
                assert [int(s[3:]) for s in batch["id"]] == [int(torch.nonzero((X == r).all(1))) for r in x]
                self.ids.extend(batch["id"])
        return ((self.module(x).squeeze(-1) - y) ** 2).mean()


def _train(kind, accumulate):
    objective = Regression()
    result = hybridpgm.fit(objective, Examples(kind), epochs=2, batch_size=8, accumulate=accumulate, progress=False,
                           seed=0, device="cpu", optim=functools.partial(torch.optim.SGD, lr=0.05))
    return objective, result


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("kind, plain", [("namedtuple", "tuple"), ("UserDict", "dict"), ("Mapping", "dict"),
                                         ("dict with an id first", "dict"), ("dict with an id last", "dict")])
def test_fit_trains_every_collated_structure_as_the_plain_tuple_or_dict(kind, plain, accumulate):
    """Before, a namedtuple crashed ``move_to`` with a raw TypeError (``Pair(generator)``), a UserDict or other
    Mapping was refused as a batch of unknown size, and a string field ("id") was refused (first) or could not
    be split under accumulation (last)."""
    objective, result = _train(kind, accumulate)
    reference, _ = _train(plain, accumulate)
    assert result.steps == 10
    assert objective.types == {type(EXAMPLES[kind](0))}  # the loss sees the dataset's own structure
    for a, b in zip(objective.module.parameters(), reference.module.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if "id" in kind:
        assert sorted(objective.ids) == sorted([f"row{i}" for i in range(len(X))] * 2)  # every row, each epoch


def test_split_batch_keeps_the_structure_and_splits_string_fields_like_the_tensors():
    x = torch.arange(10.0)
    batch = Record(id=[f"r{i}" for i in range(10)], sub=Pair(x, 2 * x), scale=0.5, none=None, temp=torch.tensor(3.0),
                   names=["a", "b"], view=Frozen({"x": x}))
    parts = split_batch(batch, 4)
    assert [w for _, w in parts] == [0.3, 0.3, 0.2, 0.2]
    for micro, _ in parts:
        assert type(micro) is Record and type(micro["sub"]) is Pair and type(micro["view"]) is Frozen
        assert micro["id"] == [f"r{int(v)}" for v in micro["sub"].x]  # split at the tensors' row bounds
        assert torch.equal(micro["sub"].y, 2 * micro["sub"].x) and torch.equal(micro["view"]["x"], micro["sub"].x)
        assert micro["scale"] == 0.5 and micro["none"] is None and micro["temp"] is batch["temp"]
        assert micro["names"] == ["a", "b"]  # a list that is not B long is no field of the examples
    assert torch.equal(torch.cat([m["sub"].x for m, _ in parts]), x)
    assert batch["id"] == [f"r{i}" for i in range(10)]  # the batch itself is left as it was


def test_batch_size_of_takes_the_first_tensor_then_a_string_field():
    assert batch_size_of({"id": ["a", "b", "c"], "x": torch.zeros(3, 2)}) == 3
    assert batch_size_of(Pair(torch.tensor(1.0), torch.zeros(5))) == 5  # a 0-d tensor has no rows
    assert batch_size_of(Record(scale=2.0, id=["a", "b"])) == 2
    assert batch_size_of(Frozen({"x": torch.zeros(4, 1)})) == 4
    for bad in (None, (), {"scale": 1.0}, "text"):
        with pytest.raises(DataError, match=f"batch of type {type(bad).__name__}: it holds no tensor"):
            batch_size_of(bad)


def test_move_to_keeps_named_tuples_and_mappings():
    batch = Pair(Record(x=torch.zeros(2), id=["a", "b"]), Frozen({"y": torch.ones(2, dtype=torch.float64)}))
    moved = move_to(batch, torch.device("cpu"))
    assert type(moved) is Pair and type(moved.x) is Record and type(moved.y) is Frozen
    assert moved.x["id"] == ["a", "b"] and torch.equal(moved.y["y"], batch.y["y"])
    assert moved.y["y"].dtype == torch.float64
