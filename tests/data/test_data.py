import gzip
import struct

import numpy as np
import pytest
import torch

from hybridpgm.data import (DynamicBinarized, binarize_static, check_features, check_finite, data_loader,
                            find_fashion_mnist, load_dataset, read_idx, training_data)
from hybridpgm.data.fashion_mnist import DEBIAN_PATH, FILES
from hybridpgm.errors import ConfigError, DataError
from tests.data.ready_batches import DictBatch, TupleBatch

HAVE_FASHION = all((DEBIAN_PATH / (stem + ".gz")).is_file() for stem in FILES.values())


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(">u1" if code == 0x08 else array.dtype).tobytes())


def _fake_fashion(folder, n_train=12, n_test=4):
    rng = np.random.RandomState(0)
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.randint(0, 256, (n_train, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", rng.randint(0, 10, n_train))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.randint(0, 10, n_test))


def test_digits_splits_are_fixed_and_scaled():
    d = load_dataset("digits")
    assert (len(d.train), len(d.valid), len(d.test)) == (1257, 180, 360)
    assert d.train.x.dtype == torch.float32 and d.train.x.shape[1] == 64 == d.num_features
    assert 0.0 <= d.train.x.min() and d.train.x.max() <= 1.0
    assert torch.equal(load_dataset("digits").test.y, d.test.y)
    assert set(d.test.y.tolist()) == set(range(10))


def test_static_binarization_is_seeded():
    a = load_dataset("digits", binarize="static", seed=0)
    b = load_dataset("digits", binarize="static", seed=0)
    c = load_dataset("digits", binarize="static", seed=1)
    assert set(a.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)


@pytest.mark.parametrize("binarize", ["static", "dynamic", None])
def test_a_seed_torch_refuses_is_a_config_error_naming_the_seed(binarize):
    """Before, load_dataset(seed=2**64) ended in a bare ValueError from torch.Generator.manual_seed."""
    with pytest.raises(ConfigError, match=r"load_dataset seed must be an integer in \[-2\*\*63, 2\*\*64 - 3\] "
                                          r".*got 18446744073709551616"):
        load_dataset("digits", binarize=binarize, seed=2**64)
    with pytest.raises(ConfigError, match=r"load_dataset seed .* got 18446744073709551614"):  # seed + 2 is 2**64
        load_dataset("digits", binarize=binarize, seed=2**64 - 2)
    edge = load_dataset("digits", binarize=binarize, seed=2**64 - 3)
    assert torch.equal(edge.test.x, load_dataset("digits", binarize=binarize, seed=2**64 - 3).test.x)
    with pytest.raises(ConfigError, match=r"binarize_static seed must be an integer in .* got -9223372036854775809"):
        binarize_static(torch.rand(3, 2), -2**63 - 1)


def test_dynamic_binarization_redraws_the_training_split():
    d = load_dataset("digits", binarize="dynamic")
    data = training_data(d)
    assert isinstance(data, DynamicBinarized) and set(d.test.x.unique().tolist()) == {0.0, 1.0}
    first, second = data.draw(range(200)), data.draw(range(200))
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    # the mean of many draws is the grey level
    draws = torch.stack([data.draw(range(50)) for _ in range(400)]).mean(0)
    assert (draws - d.train.x[:50]).abs().max() < 0.15
    x, y = training_data(d, labels=True)[3]
    assert x.shape == (64,) and y == d.train.y[3]


def test_idx_reader_round_trip_and_errors(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(DataError, match="short"):
        read_idx(tmp_path / "short")


def test_fashion_from_a_user_folder_and_env(tmp_path, monkeypatch):
    _fake_fashion(tmp_path)
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert d.train.x.shape == (12, 784) and d.test.x.shape == (4, 784) and d.image_shape == (28, 28)
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path))
    assert find_fashion_mnist()["test_y"].parent == tmp_path


def test_missing_fashion_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDPGM_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr("hybridpgm.data.fashion_mnist.DEBIAN_PATH", tmp_path / "debian")
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "mine")
    message = str(info.value)
    assert str(tmp_path / "mine") in message and "nowhere" in message
    assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist():
    d = load_dataset("fashion-mnist", binarize="static")
    assert (len(d.train), len(d.valid), len(d.test)) == (50000, 10000, 10000)
    assert set(d.test.x[:100].unique().tolist()) == {0.0, 1.0}


def test_bad_inputs():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="binarize"):
        load_dataset("digits", binarize="sometimes")
    with pytest.raises(DataError, match="NaN/inf"):
        check_finite(torch.tensor([[0.0, float("inf")]]), "x")
    with pytest.raises(DataError, match=r"\(3, 5\).*\(N, 64\)"):
        check_features(torch.zeros(3, 5), 64)
    with pytest.raises(DataError, match="range"):
        binarize_static(torch.tensor([2.0]))


def test_data_loader_batches_with_seeded_shuffle():
    x = torch.arange(10.0)
    a = [b.tolist() for b in data_loader(x, 4, shuffle=True, seed=3)]
    b = [b.tolist() for b in data_loader(x, 4, shuffle=True, seed=3)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and len(a[0]) == 4


@pytest.mark.parametrize("kind", ["random_split", "stack"])
def test_data_loader_collates_subsets_and_stack_datasets_as_torch_does(kind):
    """Before, a dataset with ``__getitems__`` (torch's Subset, StackDataset) got an identity collate: a batch
    was a list of B (x, y) tuples instead of (x[B, D], y[B])."""
    from torch.utils.data import StackDataset, TensorDataset, random_split

    x, y = torch.randn(20, 3), torch.randn(20)
    if kind == "random_split":
        data, _ = random_split(TensorDataset(x, y), [16, 4], generator=torch.Generator().manual_seed(0))
        rows = list(data.indices[:4])
    else:
        data, rows = StackDataset(x, y), [0, 1, 2, 3]
    xb, yb = next(iter(data_loader(data, batch_size=4)))
    assert xb.shape == (4, 3) and yb.shape == (4,)
    assert torch.equal(xb, x[rows]) and torch.equal(yb, y[rows])
    assert next(iter(data_loader(x, batch_size=4))).shape == (4, 3)  # hybridpgm's own datasets unchanged
    xb, yb = next(iter(data_loader((x, y), batch_size=4)))
    assert torch.equal(xb, x[:4]) and torch.equal(yb, y[:4])


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_data_loader_uses_a_ready_batch_from_a_custom_getitems_as_it_is(kind):
    """Found by a review: every ``__getitems__`` result was passed to default_collate unless the class set
    getitems_returns_batch = True, so a custom dataset returning (x[idx], y[idx]) or a dict of batched
    tensors crashed data_loader with a raw torch error.  A list (torch's list of examples) is still collated."""
    import pickle

    data = TupleBatch() if kind == "tuple" else DictBatch()
    loader = data_loader(data, batch_size=4, shuffle=True, seed=1)
    pickle.dumps(loader.collate_fn)  # worker processes get it pickled
    seen = []
    for batch in loader:
        x, y = batch if kind == "tuple" else (batch["x"], batch["y"])
        assert isinstance(batch, tuple if kind == "tuple" else dict) and torch.equal(x, data.x[y])
        seen += y.tolist()
    assert sorted(seen) == list(range(6))
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for batch in loader:  # the batches train a model
        x, y = batch if kind == "tuple" else (batch["x"], batch["y"])
        opt.zero_grad()
        ((model(x).squeeze(-1) - y) ** 2).mean().backward()
        opt.step()
    assert not torch.equal(before, model.weight.detach())


@pytest.mark.parametrize("option", ["shuffle", "drop_last"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_data_loader_switches_are_bools(option, value):
    """Before, shuffle="no" shuffled and drop_last="no" dropped the last batch."""
    with pytest.raises(ConfigError, match=f"data_loader {option} must be True or False, got {value!r}"):
        data_loader(torch.zeros(5, 1), batch_size=2, **{option: value})


@pytest.mark.parametrize("value", ["no", 0, None])
def test_training_data_labels_is_a_bool(value):
    """Before, training_data(d, labels="no") returned the labels."""
    with pytest.raises(ConfigError, match=f"training_data labels must be True or False, got {value!r}"):
        training_data(load_dataset("digits"), labels=value)


@pytest.mark.parametrize("labels,code,match", [
    (np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 200, 255, 9], dtype=np.uint8), 0x08,
     r"holds 2 label\(s\) outside the classes 0..9, the first 200 at index 9"),
    (np.array([0.5, 1.7] + [2.0] * 10, dtype=">f4"), 0x0D, r"holds >f4 labels, expected unsigned bytes"),
    (np.arange(12, dtype=">i4") % 10, 0x0C, r"holds >i4 labels, expected unsigned bytes"),
], ids=["out-of-range", "float", "int32"])
def test_fashion_labels_must_be_bytes_naming_a_class(labels, code, match, tmp_path):
    """Before, labels 200 and 255 were accepted, float labels truncated and int32 ones taken."""
    _fake_fashion(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    header = bytes([0, 0, code, 1]) + struct.pack(">I", len(labels))
    with gzip.open(path, "wb") as handle:
        handle.write(header + labels.tobytes())
    with pytest.raises(DataError, match=match) as info:
        load_dataset("fashion-mnist", root=tmp_path)
    assert str(path) in str(info.value)


def test_a_small_fashion_training_file_has_an_empty_validation_split(tmp_path):
    """Documented: a training file of at most 10,000 images is all training data."""
    _fake_fashion(tmp_path)
    d = load_dataset("fashion-mnist", root=tmp_path)
    assert len(d.train) == 12 and len(d.valid) == 0


def test_read_idx_of_a_damaged_gzip_names_the_file(tmp_path):
    """Before, a corrupt deflate stream raised a bare zlib.error."""
    array = np.zeros((3, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "good.gz", array)
    bad = bytearray((tmp_path / "good.gz").read_bytes())
    bad[20] ^= 0xFF
    bad[30] ^= 0xFF
    (tmp_path / "damaged.gz").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"cannot read IDX file .*damaged\.gz"):
        read_idx(tmp_path / "damaged.gz")


@pytest.mark.parametrize("root", [b"/usr/share/datasets/fashion-mnist", 5, ["/usr/share/datasets/fashion-mnist"]])
@pytest.mark.parametrize("load", ["load_dataset", "find_fashion_mnist"])
def test_a_fashion_root_that_is_not_a_path_is_a_data_error_naming_it(root, load):
    """Before, pathlib's raw TypeError (Path(root)); read_idx already refused the same values with a DataError."""
    with pytest.raises(DataError, match=rf"Fashion-MNIST root must be a folder path.*got {type(root).__name__} "):
        if load == "load_dataset":
            load_dataset("fashion-mnist", root=root)
        else:
            find_fashion_mnist(root)


def test_data_loader_passes_worker_options_on_and_its_workers_repeat_the_order():
    """Found by an audit: ``data_loader`` took no ``num_workers`` (nor ``pin_memory``, ``persistent_workers``,
    ``worker_init_fn``), though its collation functions are module-level for worker processes; the options go to
    the DataLoader now, and with two workers the batches are those of one process for the same seed."""
    x = torch.arange(40.0).reshape(20, 2)
    alone = [b for b in data_loader(x, 6, shuffle=True, seed=3)]
    loader = data_loader(x, 6, shuffle=True, seed=3, num_workers=2, persistent_workers=True)
    assert loader.num_workers == 2 and loader.persistent_workers
    workers = [b for b in loader]
    assert len(workers) == len(alone) and all(torch.equal(a, b) for a, b in zip(alone, workers))
    with pytest.raises(ConfigError, match=r"data_loader sets \['collate_fn'\] itself"):
        data_loader(x, 6, collate_fn=list)


@pytest.mark.parametrize("options, match", [
    ({"num_worker": 2}, r"data_loader options \['num_worker'\]: .*unexpected keyword argument 'num_worker'"),
    ({"num_workers": -1}, r"data_loader num_workers"), ({"num_workers": 1.5}, r"data_loader num_workers"),
    ({"num_workers": True}, r"data_loader num_workers"), ({"timeout": -1}, r"data_loader timeout"),
    ({"persistent_workers": True}, r"data_loader options \['persistent_workers'\]: .*num_workers")])
def test_bad_data_loader_options_are_refused_by_name(options, match):
    """Found by a review: the DataLoader options reached torch as they were, so a misspelt one or a negative count
    raised torch's raw TypeError/ValueError, and ``num_workers=1.5`` or ``timeout=-1`` failed only when iterated."""
    with pytest.raises(ConfigError, match=match):
        data_loader(torch.arange(10.0), 4, **options)
