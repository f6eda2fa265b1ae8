"""``read_torch_file(..., mmap=True)`` (hybridpgm/train/torch_load.py): a zip archive's tensors map the file, a
file torch cannot map is read as before, and every refusal reads as it does without the mapping."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.train.torch_load import read_torch_file

linux_only = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")


def _mapped(path: Path) -> bool:
    gc.collect()
    return any(str(path.resolve()) in line for line in Path("/proc/self/maps").read_text().splitlines())


@linux_only
def test_a_zip_archive_read_with_mmap_maps_the_file_while_its_tensors_live(tmp_path):
    path = tmp_path / "state.pt"
    saved = {"step": 2, "w": torch.randn(64, 32, dtype=torch.float64), "ids": torch.arange(5)}
    torch.save(saved, path)
    state = read_torch_file(path, "checkpoint", mmap=True)
    assert state["step"] == 2 and all(torch.equal(state[k], saved[k]) and state[k].dtype == saved[k].dtype
                                      for k in ("w", "ids"))
    assert _mapped(path)
    del state
    assert not _mapped(path)
    read_torch_file(path, "checkpoint")  # without mmap: read into the process's memory
    assert not _mapped(path)


def test_a_legacy_non_zip_file_is_read_without_the_mapping(tmp_path):
    """torch.load(mmap=True) raises for the legacy format; the file loads as before."""
    path = tmp_path / "legacy.pt"
    torch.save({"step": 3, "w": torch.arange(4.0)}, path, _use_new_zipfile_serialization=False)
    state = read_torch_file(path, "checkpoint", mmap=True)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(4.0))


def _flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-200] ^= 0x10  # the central directory: a damaged archive
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(b""),
    lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
    lambda path: torch.save({"obj": ValueError("x")}, path),
    lambda path: torch.save({"w": torch.ones(1).expand(10 ** 8)}, path),
    _flipped,
])
def test_a_refusal_reads_the_same_with_and_without_mmap(tmp_path, damage):
    path = tmp_path / "bad.pt"
    torch.save({"w": torch.randn(300, 300)}, path)
    damage(path)
    with pytest.raises(CheckpointError) as plain:
        read_torch_file(path, "model file")
    with pytest.raises(CheckpointError) as mapped:
        read_torch_file(path, "model file", mmap=True)
    assert str(mapped.value) == str(plain.value) and str(plain.value).startswith("cannot read model file")


def test_map_location_is_applied_to_the_mapped_tensors(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    seen = []

    def locate(storage, location):
        seen.append(location)
        return storage

    state = read_torch_file(path, "checkpoint", map_location=locate, mmap=True)
    assert seen == ["cpu"] and torch.equal(state["w"], torch.arange(6.0))
