import errno
import os
import random
import subprocess
import tempfile

import numpy as np
import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train.checkpoint import (load_checkpoint, nonfinite_entries, remove_stale_temporaries,
                                        rng_state, save_checkpoint, set_rng_state)
from tests.train.helpers import LinearRegression, regression_data


def test_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    state = {"module": {"w": torch.arange(3.0)}, "step": 4, "rng": rng_state(), "history": {"loss": [1.0]}}
    save_checkpoint(path, state)
    loaded = torch.load(path, weights_only=True)
    assert loaded["step"] == 4 and torch.equal(loaded["module"]["w"], torch.arange(3.0))
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_rng_state_restores_every_generator():
    state = rng_state()
    draws = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable(torch.Tensor):  # a tensor (kept as it is) that fails mid-write
        def __reduce_ex__(self, protocol):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"step": 2, "bad": torch.zeros(1).as_subclass(Unpicklable)})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_unreadable_checkpoints_name_the_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"format_version": 1, "obj": ValueError("arbitrary object")}, path)  # not weights-only loadable
    with pytest.raises(CheckpointError, match="foreign.pt"):
        load_checkpoint(path)
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a hybridpgm checkpoint"):
        load_checkpoint(path)


def test_a_failed_write_names_the_file_and_the_os_reason(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})
    real_fdopen = os.fdopen

    class FullFile:  # the device fills up after a few bytes
        def __init__(self, handle, mode):
            self.file = real_fdopen(handle, mode)

        def write(self, data):
            self.file.write(bytes(data)[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            self.file.flush()

        def fileno(self):
            return self.file.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(os, "fdopen", FullFile)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
    message = str(info.value)
    assert str(path) in message and "ENOSPC" in message and "No space left on device" in message
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint is kept


def test_a_read_only_folder_is_a_checkpoint_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError, match=r"c.pt'.*Permission denied \(EACCES\)"):
        save_checkpoint(tmp_path / "c.pt", {"step": 1})


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A tmpfs of 300 KB (needs the right to mount, as root in a container)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_full_file_system_raises_checkpoint_error_and_leaves_no_temporary(tiny_filesystem):
    path = tiny_filesystem / "run.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(10)})
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"step": 2, "w": torch.zeros(200_000)})  # 800 KB on 300 KB
    assert f"cannot write checkpoint {str(path)!r}: No space left on device (ENOSPC)" in str(info.value)
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == ["run.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_stale_temporaries_of_the_same_checkpoint_are_removed(tmp_path):
    path = tmp_path / "c.pt"
    stale = [tmp_path / ".c.pt.abcd1234.tmp", tmp_path / ".c.pt.zzzz9999.tmp"]
    others = [tmp_path / ".d.pt.abcd1234.tmp", tmp_path / "c.pt.tmp", tmp_path / "c.pt"]
    for p in stale + others:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(others)


def test_fit_removes_stale_temporaries_at_start(tmp_path):
    path = tmp_path / "c.pt"
    stale = tmp_path / ".c.pt.k1ll3d00.tmp"
    stale.write_bytes(b"half a checkpoint")
    fit(LinearRegression(), regression_data(), checkpoint=path, progress=False, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_non_finite_state_is_never_written(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1, "module": {"w": torch.ones(2)}})
    state = {"step": 2, "module": {"w": torch.tensor([1.0, float("nan")])},
             "players": {"fit": {"optimizer": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}}}}}}
    with pytest.raises(CheckpointError, match=r"refusing to write checkpoint .*c.pt'.*\['module'\]\['w'\], "
                                              r"\['players'\]\['fit'\]\['optimizer'\]\['state'\]\[0\]\['exp_avg'\]"):
        save_checkpoint(path, state)
    assert load_checkpoint(path)["step"] == 1
    assert nonfinite_entries({"rng": torch.zeros(3, dtype=torch.uint8), "x": [torch.zeros(2)]}) == []


def test_fit_on_a_full_file_system_raises_checkpoint_error_and_keeps_the_last_checkpoint(tiny_filesystem):
    path = tiny_filesystem / "fit.pt"
    fit(LinearRegression(), regression_data(), checkpoint=path, progress=False, seed=0, max_steps=1)
    free = os.statvfs(tiny_filesystem).f_bavail * os.statvfs(tiny_filesystem).f_frsize
    (tiny_filesystem / "ballast").write_bytes(b"\0" * (free - path.stat().st_size // 2))  # no room for another
    with pytest.raises(CheckpointError, match=r"fit.pt'.*\(ENOSPC\)"):
        fit(LinearRegression(), regression_data(), checkpoint=path, progress=False, seed=0, epochs=3,
            checkpoint_every=1)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tiny_filesystem.iterdir()) == ["ballast", "fit.pt"]


def test_infinite_buffers_are_kept_but_nan_and_infinite_parameters_refused(tmp_path):
    """GPyTorch keeps an unbounded constraint's limit as an infinite buffer: a GP must checkpoint."""
    import gpytorch

    from hybridpgm.train.checkpoint import buffer_paths, save_checkpoint

    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    assert any(not torch.isfinite(b).all() for b in likelihood.buffers())  # the case this is about
    path = tmp_path / "gp.pt"
    save_checkpoint(path, {"module": likelihood.state_dict()}, infinite_ok=buffer_paths(likelihood))
    assert load_checkpoint(path)["module"].keys() == likelihood.state_dict().keys()
    with pytest.raises(CheckpointError, match="NaN or infinity"):  # without the allowance: refused
        save_checkpoint(tmp_path / "strict.pt", {"module": likelihood.state_dict()})
    name = next(n for n, _ in likelihood.named_buffers())
    poisoned = {**likelihood.state_dict(), name: torch.tensor(float("nan"))}
    with pytest.raises(CheckpointError, match=name):  # a buffer may be infinite, never NaN
        save_checkpoint(tmp_path / "nan.pt", {"module": poisoned}, infinite_ok=buffer_paths(likelihood))
    assert not (tmp_path / "nan.pt").exists()


def test_a_buffer_shared_under_several_names_may_be_infinite_under_each():
    """A module reachable twice (GPyTorch's ``mll.model`` is the GP again) lists its
    infinite constraint buffers under every state-dict name; each is allowed."""
    import gpytorch

    from hybridpgm.train.checkpoint import buffer_paths

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.likelihood = gpytorch.likelihoods.GaussianLikelihood()
            self.again = self.likelihood  # the same module under a second name

    module = Twice()
    state = {"module": module.state_dict()}
    infinite = [k for k, v in state["module"].items() if not torch.isfinite(v).all()]
    assert any(k.startswith("again.") for k in infinite) and any(k.startswith("likelihood.") for k in infinite)
    assert nonfinite_entries(state, infinite_ok=buffer_paths(module)) == []


def test_a_model_file_is_not_taken_for_a_checkpoint(tmp_path):
    import hybridpgm

    path = hybridpgm.save(hybridpgm.VAE(8, 2, [4]), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="is a model file written by hybridpgm.save.*hybridpgm.load"):
        load_checkpoint(path)


def test_save_checkpoint_to_a_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*: it is a directory"):
        save_checkpoint(tmp_path, {"step": 1})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="maps a checkpoint's RNG states onto CUDA")
def test_rng_states_mapped_to_cuda_still_restore(tmp_path):
    """Found in a CUDA audit: fit resumes with load_checkpoint(map_location=device), which puts the saved RNG
    states on CUDA too, and torch takes RNG states only as CPU byte tensors ('RNG state must be a
    torch.ByteTensor'); numpy's keys could not be read either."""
    torch.rand(1, device="cuda")  # CUDA initialised: its generator's state is saved too
    path = tmp_path / "rng.pt"
    torch.save({"rng": rng_state()}, path)
    draws = (torch.rand(3), torch.rand(3, device="cuda"), random.random(), np.random.rand())
    set_rng_state(torch.load(path, map_location="cuda", weights_only=True)["rng"])
    again = (torch.rand(3), torch.rand(3, device="cuda"), random.random(), np.random.rand())
    assert torch.equal(draws[0], again[0]) and torch.equal(draws[1], again[1]) and draws[2:] == again[2:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="resumes a fit on CUDA")
def test_a_fit_on_cuda_resumes_from_its_checkpoint(tmp_path):
    """fit(device='cuda') reads its checkpoint onto CUDA; resuming restored the RNG states from there."""
    options = dict(epochs=2, batch_size=16, progress=False, seed=0, device="cuda")
    whole = LinearRegression()
    fit(whole, regression_data(), **options)
    resumed = LinearRegression()
    fit(resumed, regression_data(), checkpoint=tmp_path / "c.pt", max_steps=3, **options)
    result = fit(resumed, regression_data(), checkpoint=tmp_path / "c.pt", **options)
    assert result.steps == 8
    assert torch.allclose(resumed.module.weight.cpu(), whole.module.weight.cpu())
