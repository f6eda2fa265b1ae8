"""``fit`` refuses a checkpoint it could not write before its first step (hybridpgm/train/run_start.py's
``open_checkpoint``, through ``atomic_write.check_writable``), not at the first write after every step.

Before, a checkpoint under a file, or in a folder that cannot be written, trained every step and then raised at
the final write: the history and the optimizers' states were lost and no resumable file existed.
"""

import errno
import os
import tempfile
from types import SimpleNamespace

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError
from hybridpgm.train.run_start import open_checkpoint
from tests.train.helpers import LinearRegression, regression_data


class CountSteps:
    def __init__(self):
        self.steps = 0

    def on_step_end(self, info):
        self.steps += 1


def _fit(checkpoint, counter, max_steps=5, **kw):
    return fit(LinearRegression(), regression_data(), batch_size=16, max_steps=max_steps, seed=0, progress=False,
               checkpoint=checkpoint, callbacks=[counter], **kw)


def _unwritable(monkeypatch, folder):
    """No file can be created in ``folder`` (a read-only or immutable folder: modes do not stop root)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir) == os.path.abspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, "x"))
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_checkpoint_under_a_file_is_refused_before_the_first_step(tmp_path):
    """Old code: 5 steps, then "File exists (EEXIST)" at the final write."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    counter = CountSteps()
    with pytest.raises(CheckpointError, match=r"lies under '.*notes\.txt', which is a file, not a folder"):
        _fit(notes / "ck.pt", counter)
    assert counter.steps == 0


@pytest.mark.parametrize("missing", ["", "new/sub/"])
def test_a_checkpoint_folder_that_cannot_be_written_is_refused_before_the_first_step(tmp_path, monkeypatch,
                                                                                      missing):
    """Old code: 5 steps, then the CheckpointError at the final write.  A folder still to be created is tested
    where it would be created, and nothing is created for the test."""
    folder = tmp_path / "ro"
    folder.mkdir()
    _unwritable(monkeypatch, folder)
    counter = CountSteps()
    with pytest.raises(CheckpointError, match=rf"cannot write checkpoint '.*ro/{missing}ck\.pt': Permission denied "
                                              r"\(EACCES\)$"):
        _fit(folder / missing / "ck.pt", counter)
    assert counter.steps == 0 and os.listdir(folder) == []


def test_a_resumed_run_whose_folder_became_unwritable_says_the_checkpoint_is_kept(tmp_path, monkeypatch):
    """Old code: the resumed run trained its steps, then failed its write."""
    _fit(tmp_path / "ck.pt", CountSteps())
    _unwritable(monkeypatch, tmp_path)
    counter = CountSteps()
    with pytest.raises(CheckpointError, match=r"\(EACCES\); the previous checkpoint is kept$"):
        _fit(tmp_path / "ck.pt", counter, max_steps=10, resume=True)
    assert counter.steps == 0 and sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_the_write_test_leaves_nothing_and_creates_no_folder(tmp_path):
    """``check_writable`` creates and removes one temporary, named as the writer names its own (so a test killed
    half-way leaves what the next write removes); it creates no folder.  ``make_writable_folder`` (the CLI's
    ``--out``) creates its folder.  New functions: this failed on old code with an ImportError."""
    from hybridpgm.train.atomic_write import check_writable, make_writable_folder

    seen = []
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        handle, name = real(*args, **kwargs)
        seen.append(os.path.basename(name))
        return handle, name
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", mkstemp)
        assert check_writable(tmp_path / "a" / "b" / "ck.pt") == tmp_path / "a" / "b" / "ck.pt"
        assert make_writable_folder(tmp_path / "out") == tmp_path / "out"
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == []
    assert seen[0].startswith(".ck.pt.") and seen[0].endswith(".tmp") and f"-{os.getpid()}." in seen[0]
    assert seen[1].startswith(".hybridpgm-write-test-")


class _Rank(SimpleNamespace):
    """A :class:`~hybridpgm.train.distributed.DistributedContext` of two ranks: rank 0 records what it
    broadcasts, rank 1 receives ``sent``."""

    def broadcast_object(self, obj):
        if self.is_main:
            self.sent = obj
            return obj
        return self.sent


def test_every_rank_raises_rank_0s_refusal_after_the_broadcast(tmp_path):
    """Rank 0 must not raise before the broadcast the other ranks wait in (they would hang until the timeout).
    Old code: no refusal at all."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    rank0 = _Rank(is_main=True, world_size=2)
    with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*which is a file") as info:
        open_checkpoint(notes / "ck.pt", "auto", False, rank0, torch.device("cpu"))
    assert rank0.sent == (False, str(info.value))
    rank1 = _Rank(is_main=False, world_size=2, sent=rank0.sent)
    with pytest.raises(CheckpointError, match=r"^rank 0 refused the checkpoint: cannot write checkpoint .*which is "
                                              r"a file"):
        open_checkpoint(notes / "ck.pt", "auto", False, rank1, torch.device("cpu"))


def test_every_rank_raises_when_rank_0_cannot_remove_the_checkpoint_to_overwrite(tmp_path, monkeypatch):
    """Old code: rank 0 raised before the broadcast, and the other ranks waited in it until the timeout."""
    checkpoint = tmp_path / "ck.pt"
    _fit(checkpoint, CountSteps())
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fspath(path) == str(checkpoint):
            raise PermissionError(errno.EPERM, "Operation not permitted", os.fspath(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", unlink)
    rank0 = _Rank(is_main=True, world_size=2)
    with pytest.raises(CheckpointError, match=r"^overwrite=True cannot remove checkpoint .*EPERM"):
        open_checkpoint(checkpoint, "auto", True, rank0, torch.device("cpu"))
    assert rank0.sent[0] is True and rank0.sent[1].startswith("overwrite=True cannot remove")
