"""hybridpgm.load holds one copy of the weights, and keeps no view of the file it mapped
(:mod:`hybridpgm.serialization_state`).

The peak is measured in a fresh interpreter as the process's anonymous resident memory (``RssAnon`` of
``/proc/self/status``): what the system cannot drop and read back from a file.  The pages of the mapped file are left
out on purpose, they are the file's cache, which the system reclaims under pressure; ``VmHWM`` counts them too.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.serialization import serializable
from hybridpgm.serialization_state import owned

GOLDEN = Path(__file__).parent / "golden" / "models"
_LINUX_PROC = Path("/proc/self/status").exists() and Path("/proc/self/maps").exists()
linux_only = pytest.mark.skipif(not _LINUX_PROC, reason="reads Linux's /proc/self/status and /proc/self/maps")

#: the child: a warm-up load of a small model of the same class (imports, first-call allocations), then the peak of
#: RssAnon above that during the load of the large one, sampled by a thread and read when load_state_dict returns
#: (where the old load held the file's weights and the module's both), and whether the file is still mapped after
_LOAD = r"""
import gc, json, sys, threading, torch
torch.set_num_threads(1)
import hybridpgm
def anon():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))
hybridpgm.load(sys.argv[2])
peak = [0]
copy = torch.nn.Module.load_state_dict
def copied(self, *args, **kwargs):
    result = copy(self, *args, **kwargs)
    peak[0] = max(peak[0], anon())
    return result
torch.nn.Module.load_state_dict = copied
done = threading.Event()
def sample():
    while not done.wait(0.0002):
        peak[0] = max(peak[0], anon())
thread = threading.Thread(target=sample)
thread.start()
done.wait(0.05)
gc.collect()
base = peak[0] = anon()
model = hybridpgm.load(sys.argv[1])
done.set()
thread.join()
peak[0] = max(peak[0], anon())
gc.collect()
mapped = any(sys.argv[1] in line for line in open("/proc/self/maps"))
print(json.dumps([peak[0] - base, mapped, sum(p.numel() for p in model.parameters())]))
"""


def _mapped(path: Path) -> bool:
    """Whether this process maps the file ``path``."""
    gc.collect()
    return any(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


#: (large, small) models of one class: a VAE and an RBM of about 134 MB of weights each
_LARGE_AND_SMALL = {"VAE": (lambda: hybridpgm.VAE(2896, 16, [2896, 2896]), lambda: hybridpgm.VAE(8, 16, [8, 8])),
                    "RBM": (lambda: hybridpgm.RBM(5800, 5800), lambda: hybridpgm.RBM(8, 8))}


@linux_only
@pytest.mark.parametrize("kind", sorted(_LARGE_AND_SMALL))
def test_loading_a_model_needs_one_copy_of_its_weights_not_two(tmp_path, kind):
    """A VAE and an RBM of 134 MB of weights: the load's peak of the process's own memory stays under 1.4 times the
    weights (measured: 1.10x and 1.03x, the module plus the finiteness check's chunk temporaries and the
    interpreter's).  Before, the file's weights were read into the process's memory and held while the module was
    built and filled: 2.2x (the weights twice, and 28 MB left by the finiteness check's 16 MiB chunks); an RBM built
    its weight as ``randn(...) * init_scale``, two copies for a moment: 3.0x.  The 1.4 sits between, with about 50 MB
    of room on either side."""
    large, small = _LARGE_AND_SMALL[kind]
    torch.manual_seed(0)
    big = large()
    nbytes = sum(t.numel() * t.element_size() for t in big.state_dict().values())
    count = sum(p.numel() for p in big.parameters())
    hybridpgm.save(big, tmp_path / "big.pt")
    del big
    hybridpgm.save(small(), tmp_path / "small.pt")
    done = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "big.pt"), str(tmp_path / "small.pt")],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    peak, mapped, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == count and nbytes > 100 << 20
    assert peak < 1.4 * nbytes, f"the load's peak is {peak / nbytes:.2f} times the {nbytes} bytes of weights"
    assert not mapped


@linux_only
@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.pt")))
def test_a_loaded_model_keeps_no_view_of_its_file(name):
    """The tensors the constructors are given (a GP's training data, a Bayesian network's tables) are copied out
    of the mapped file before they are built from: a GP keeps its training data, which would otherwise be a view of
    the file (changed by a later write to it) and keep the whole file mapped as long as the model lives."""
    path = GOLDEN / f"{name}.pt"
    model = hybridpgm.load(path)
    assert not _mapped(path.resolve())
    assert isinstance(model, nn.Module)


@serializable
class _Counter(nn.Linear):
    """A layer whose extra state (torch's ``get_extra_state``) holds a tensor that ``set_extra_state`` keeps."""

    def __init__(self, n: int) -> None:
        super().__init__(n, n)
        self.seen = torch.zeros(n)

    def get_extra_state(self):
        return {"seen": self.seen}

    def set_extra_state(self, state):
        self.seen = state["seen"]


@linux_only
def test_a_tensor_of_a_modules_extra_state_is_copied_out_of_the_file(tmp_path):
    layer = _Counter(3)
    layer.seen += torch.tensor([1.0, 2.0, 3.0])
    path = hybridpgm.save(layer, tmp_path / "counter.pt")
    loaded = hybridpgm.load(path)
    assert torch.equal(loaded.seen, torch.tensor([1.0, 2.0, 3.0])) and torch.equal(loaded.weight, layer.weight)
    assert not _mapped(path.resolve())


def test_a_model_file_in_torchs_legacy_format_loads_without_the_mapping(tmp_path):
    """``torch.load(mmap=True)`` refuses a file of the legacy (non-zip) format: it is read as before."""
    vae = hybridpgm.VAE(6, 2, [4])
    path = hybridpgm.save(vae, tmp_path / "vae.pt")
    torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK")
    loaded = hybridpgm.load(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in vae.state_dict().items())


def test_owned_copies_keep_dtype_shape_strides_offset_and_shared_storages():
    base = torch.arange(12, dtype=torch.float64)
    tensors = {"a": base[2:].view(2, 5).t(), "b": base[:4], "n": 3, "sparse": torch.eye(2).to_sparse()}
    copies = owned(tensors)
    for key in ("a", "b"):
        assert torch.equal(copies[key], tensors[key]) and copies[key].dtype == torch.float64
        assert (copies[key].stride(), copies[key].storage_offset()) == (tensors[key].stride(),
                                                                          tensors[key].storage_offset())
        assert copies[key].untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
    assert copies["a"].untyped_storage().data_ptr() == copies["b"].untyped_storage().data_ptr()  # shared, once
    assert copies["n"] == 3 and torch.equal(copies["sparse"].to_dense(), torch.eye(2))
    base.zero_()
    assert copies["b"].tolist() == [0.0, 1.0, 2.0, 3.0]  # no view of the original
