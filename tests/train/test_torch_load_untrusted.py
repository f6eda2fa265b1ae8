"""Files from untrusted sources that would let a few kilobytes stand for gigabytes, or break the reader's walks
(hybridpgm/train/torch_load.py, checkpoint.py): a tensor whose view repeats its elements (stride 0), and a
checkpoint whose entries nest too deep or contain themselves.  Found by an audit of untrusted inputs.  The zip
side (a deflated member) is in test_torch_load_zip_entries.py."""

import pickle
import zipfile

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.graphs import load_network
from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint
from hybridpgm.train.checkpoint_history import _FLOAT_SERIES, ENCODING


def _repeating(n: int, dtype=torch.float32) -> torch.Tensor:
    """A view of one element as ``n`` elements (stride 0): ``torch.save`` writes its one-element storage."""
    return torch.zeros(1, dtype=dtype).as_strided((n,), (0,))


def test_a_stride_0_tensor_in_a_checkpoint_is_refused_naming_its_place(tmp_path):
    """Before, it loaded: a 2.5 kB checkpoint of such history series (10**7 entries each) took 360 MiB and every
    later copy or check of it allocated them all (the audit's f7).  Here a 10**10-element view in a 2 KB file."""
    path = tmp_path / "run.pt"
    torch.save({"format_version": 3, "module": {"w": torch.zeros(3, 2).as_strided((10**5, 10**5), (0, 0))}}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint '.*run.pt': its tensor \['module'\]\['w'\] of "
                                              r"shape \(100000, 100000\) and strides \(0, 0\) repeats elements: its "
                                              r"10000000000 elements of 4 bytes need 40000000000 bytes, its storage "
                                              r"holds 24; with it the views repeating elements need 40000000000 bytes "
                                              r"in all, more than the 67108864 such a file may stand for"):
        load_checkpoint(path)


def test_a_packed_history_of_stride_0_series_is_refused(tmp_path):
    n = 10**9
    series = {key: _repeating(n, torch.float64) for key in _FLOAT_SERIES}
    history = {"encoding": ENCODING, "step": _repeating(n, torch.int64),
               "loss": {"model": _repeating(n, torch.float64)}, **series, "metrics": {}, "nonfinite": {}}
    path = tmp_path / "history.pt"
    torch.save({"format_version": 3, "history": history}, path)
    with pytest.raises(CheckpointError, match=r"its tensor \['history'\]\[.*\] of shape \(1000000000,\) and "
                                              r"strides \(0,\) repeats elements"):
        load_checkpoint(path)


def test_a_stride_0_tensor_in_a_model_file_is_refused(tmp_path):
    """The audit's f2c: a 1.8 kB model file declaring a 24000 x 24000 weight took 3 s and gigabytes before the
    state dict was refused; here a small one, refused when read."""
    good = hybridpgm.save(load_network("cancer"), tmp_path / "cancer.pt")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"] = {**payload["state_dict"], "extra": torch.zeros(1).as_strided((10**5, 10**5), (0, 0))}
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"cannot read model file '.*bad.pt': its tensor \['state_dict'\]"
                                              r"\['extra'\] of shape \(100000, 100000\) and strides \(0, 0\) repeats"):
        hybridpgm.load(path)


def test_views_within_their_storage_still_load(tmp_path):
    """Guard (passes before and after): slices, transposes and tensors sharing one storage are no repeats."""
    base = torch.arange(12.0).reshape(3, 4)
    state = {"slice": base[1:, ::2], "t": base.t(), "same": base, "row": base[0], "empty": torch.zeros(0, 5)}
    path = tmp_path / "views.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_an_expanded_buffer_is_saved_as_a_dense_copy_that_loads_back(tmp_path):
    """What hybridpgm writes still loads: an expanded buffer (stride 0) is written as a dense copy of the same
    values (before, as the repeating view itself, which the reader now refuses)."""
    module = torch.nn.Linear(2, 2)
    module.register_buffer("mask", torch.ones(1).expand(3))
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"module": module.state_dict()})
    loaded = load_checkpoint(path)["module"]["mask"]
    assert torch.equal(loaded, torch.ones(3)) and loaded.stride() == (1,)


def _with_expanded_mask(tmp_path, n: int = 5):
    """A checkpoint of ``fit`` whose module's ``mask`` buffer is written as the view ``torch.ones(1).expand(n)``,
    with ``torch.save`` directly, as hybridpgm wrote an expanded buffer before it stored such views dense."""
    from tests.train.helpers import LinearRegression, regression_data

    objective = LinearRegression()
    objective.module.register_buffer("mask", torch.ones(n))
    path = tmp_path / "run.pt"
    hybridpgm.fit(objective, regression_data(), batch_size=16, max_steps=2, seed=0, progress=False, checkpoint=path)
    state = torch.load(path, weights_only=True)
    state["module"]["mask"] = torch.ones(1).expand(n)
    torch.save(state, path)
    return path, objective


def test_an_expanded_buffer_written_before_loads_and_resumes(tmp_path):
    """Before, every view needing more bytes than its storage was refused, so a checkpoint written by an earlier
    release for a module with an expanded buffer (a 5-element mask, 20 bytes on a 4-byte storage) no longer
    loaded nor resumed.  A view that stands for little memory loads as it is."""
    from tests.train.helpers import regression_data

    path, objective = _with_expanded_mask(tmp_path)
    mask = load_checkpoint(path)["module"]["mask"]
    assert mask.stride() == (0,) and torch.equal(mask, torch.ones(5))
    result = hybridpgm.fit(objective, regression_data(), batch_size=16, max_steps=4, seed=0, progress=False,
                           checkpoint=path)
    assert result.steps == 4 and torch.equal(objective.module.mask, torch.ones(5))


def test_views_repeating_elements_are_bounded_in_all_not_each(tmp_path):
    """20 views of 16 MiB each, in a 3 KB file: each alone is within the 64 MiB bound, together they pass it; the
    one that takes the sum past the bound is named (any of the 5th to 20th)."""
    one = torch.zeros(1).expand(4 << 20)
    path = tmp_path / "one.pt"
    torch.save({"format_version": 3, "extra": one}, path)
    assert load_checkpoint(path)["extra"].shape == (4 << 20,)
    path = tmp_path / "many.pt"
    torch.save({"format_version": 3, "extra": [one] * 20}, path)
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint '.*many.pt': its tensor \['extra'\]\[\d+\] of "
                                              r"shape \(4194304,\) and strides \(0,\) repeats elements: its 4194304 "
                                              r"elements of 4 bytes need 16777216 bytes, its storage holds 4; with it "
                                              r"the views repeating elements need 83886080 bytes in all, more than the "
                                              r"67108864 such a file may stand for \(64 MiB, or 16 times its size;"):
        load_checkpoint(path)


def _with_pickle(tmp_path, name: str, data_pkl: bytes):
    """A torch.save file whose ``data.pkl`` is ``data_pkl`` (written by hand: an attacker needs no deep stack)."""
    source = tmp_path / "source.pt"
    torch.save({"format_version": 3, "extra": "PLACEHOLDER"}, source)
    path = tmp_path / name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, data_pkl if info.filename.endswith("/data.pkl") else old.read(info))
    return path


def _checkpoint_pickle(extra_ops: bytes) -> bytes:
    """``{"format_version": 3, "extra": X}`` pickled, X built by the pickle opcodes ``extra_ops``."""
    plain = pickle.dumps({"format_version": 3, "extra": "PLACEHOLDER"}, protocol=2)
    placeholder = b"X\x0b\x00\x00\x00PLACEHOLDER"
    assert plain.count(placeholder) == 1
    return plain.replace(placeholder, extra_ops)


@pytest.mark.parametrize("name, ops", [
    # a list nested 5000 deep: 5000 EMPTY_LIST, a float, 5000 APPEND
    ("deep.pt", b"]" * 5000 + b"G" + b"\x00" * 8 + b"a" * 5000),
    # a list that contains itself: EMPTY_LIST, BINPUT 200, BINGET 200, APPEND
    ("cycle.pt", b"]q\xc8h\xc8a"),
])
def test_a_checkpoint_nesting_deeper_than_the_stack_is_a_checkpoint_error(tmp_path, name, ops):
    """Before, a raw RecursionError from the NaN check's recursive walk (the audit's f8)."""
    path = _with_pickle(tmp_path, name, _checkpoint_pickle(ops))
    assert "extra" in torch.load(path, weights_only=True)  # torch's unpickler reads it iteratively
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint '.*{name}': its entries nest deeper than "
                                              r"Python's recursion limit \(\d+\) allows, or contain themselves"):
        load_checkpoint(path)


def test_lists_sharing_one_list_are_walked_once_per_container(tmp_path, monkeypatch):
    """Before, a checkpoint whose list holds one shared list twice, ``d`` levels deep, made the NaN check and the
    float decoding walk all ``2**d`` paths: a 2 KB file with ``d = 60`` never finished loading.  Each container is
    now walked once, and the decoded copy is shared as the list was."""
    import hybridpgm.train.checkpoint as checkpoint

    depth, shared = 16, [1.0, {"__hybridpgm_float__": "inf"}]
    for _ in range(depth):
        shared = [shared, shared]
    path = tmp_path / "dag.pt"
    torch.save({"format_version": 3, "extra": shared}, path)
    calls = {"leaf": 0, "walk": 0}
    decoded, entries = checkpoint._decoded, checkpoint.nonfinite_entries

    def counted_leaf(value):
        calls["leaf"] += 1
        return decoded(value)

    def counted_walk(*args, **kwargs):
        calls["walk"] += 1
        return entries(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "_decoded", counted_leaf)
    monkeypatch.setattr(checkpoint, "nonfinite_entries", counted_walk)
    state = load_checkpoint(path)
    assert calls["leaf"] < 10 * depth and calls["walk"] < 10 * depth  # 2**17 on the old code
    inner = state["extra"]
    for _ in range(depth):
        assert inner[0] is inner[1]
        inner = inner[0]
    assert inner == [1.0, float("inf")]
