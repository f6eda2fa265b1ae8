"""One path policy for checkpoints and model files (:func:`hybridpgm.paths.file_path`): bytes and non-paths
refused by name, ``~`` expanded, a trailing separator refused, OS errors named; a relative ``fit`` checkpoint is
resolved once; a checkpoint or stale temporary that cannot be removed gives a CheckpointError or is skipped."""

import errno
import os

import pytest

import hybridpgm
from hybridpgm import fit
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.train.callbacks import Callback
from hybridpgm.train.checkpoint import load_checkpoint, remove_stale_temporaries
from tests.train.helpers import LinearRegression, regression_data


def _fit(checkpoint, steps=1, **kw):
    return fit(LinearRegression(), regression_data(), batch_size=16, max_steps=steps, seed=0, progress=False,
               checkpoint=checkpoint, **kw)


@pytest.mark.parametrize("call", [
    lambda d: hybridpgm.save(RBM(4, 3), os.fsencode(d / "m.pt")),
    lambda d: hybridpgm.load(os.fsencode(d / "m.pt")),
    lambda d: hybridpgm.serialization.load_model(os.fsencode(d / "m.pt")),
    lambda d: hybridpgm.save(RBM(4, 3), 3),
    lambda d: _fit(os.fsencode(d / "c.pt")),
])
def test_non_str_paths_are_refused_by_name(tmp_path, call):
    with pytest.raises(CheckpointError, match="path must be a str or os.PathLike"):  # old code: raw TypeError
        call(tmp_path)


def test_overlong_model_file_name_names_the_os_reason(tmp_path):
    with pytest.raises(CheckpointError, match="ENAMETOOLONG"):  # old code: raw OSError from Path.exists
        hybridpgm.load(tmp_path / ("x" * 300 + ".pt"))


def test_missing_model_file_is_still_named(tmp_path):
    with pytest.raises(CheckpointError, match="no model file"):
        hybridpgm.load(tmp_path / "absent.pt")


@pytest.mark.parametrize("call", [lambda p: hybridpgm.save(RBM(4, 3), p), lambda p: _fit(p)])
def test_trailing_separator_is_refused(tmp_path, call):
    with pytest.raises(CheckpointError, match="ends with a separator"):  # old code: wrote a file named newdir
        call(str(tmp_path / "newdir") + os.sep)
    assert not (tmp_path / "newdir").exists()


def test_tilde_is_the_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    hybridpgm.save(RBM(4, 3), "~/models/m.pt")
    _fit("~/runs/ck.pt")
    assert (home / "models" / "m.pt").is_file() and (home / "runs" / "ck.pt").is_file()
    assert not (tmp_path / "~").exists()  # old code: a folder literally named ~
    assert type(hybridpgm.load("~/models/m.pt")) is RBM


class ChangeFolder(Callback):
    def __init__(self, to):
        self.to = to

    def on_step_end(self, info):
        if info.step == 2:
            os.chdir(self.to)


def test_relative_checkpoint_is_resolved_when_the_run_starts(tmp_path, monkeypatch):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.chdir(a)
    _fit("ck.pt", steps=6, checkpoint_every=1, callbacks=[ChangeFolder(b)])
    assert load_checkpoint(a / "ck.pt")["step"] == 6
    assert not (b / "ck.pt").exists()  # old code: steps 3.. went to B/ck.pt


def _refusing_unlink(monkeypatch, refused):
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if refused(os.fspath(path)):
            raise PermissionError(errno.EPERM, "Operation not permitted", os.fspath(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", unlink)


def test_overwrite_that_cannot_remove_the_checkpoint_names_it(tmp_path, monkeypatch):
    path = tmp_path / "other.pt"
    _fit(path)
    _refusing_unlink(monkeypatch, lambda p: p == str(path))
    with pytest.raises(CheckpointError, match=r"cannot remove checkpoint .*other\.pt.*EPERM"):  # old: PermissionError
        _fit(path, overwrite=True)


def test_stale_temporary_that_cannot_be_removed_is_skipped(tmp_path, monkeypatch):
    stale = tmp_path / ".mine.pt.k2j4h5g6.tmp"
    stale.write_bytes(b"x")
    _refusing_unlink(monkeypatch, lambda p: p.endswith(".k2j4h5g6.tmp"))
    assert remove_stale_temporaries(tmp_path / "mine.pt") == []  # old code: PermissionError
    _fit(tmp_path / "mine.pt")
    assert load_checkpoint(tmp_path / "mine.pt")["step"] == 1 and stale.exists()
