"""The message of a write the OS refused (hybridpgm/train/atomic_write.py's ``write_error``, shared by every
writer): a path under a file rather than a folder names that file, and "the previous ... is kept" is said only
when there is a previous file.

Before, ``mkdir`` of the folders turned a file in the way into "File exists (EEXIST) ... the previous model file
is kept", which blamed the wrong thing and promised a file that could not exist.
"""

import errno
import os

import pytest

import hybridpgm
from hybridpgm import fit
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError, DataError
from hybridpgm.graphs.bif import load_network, write_bif
from hybridpgm.train.atomic_write import write_atomically, write_text_atomically
from tests.train.helpers import LinearRegression, regression_data

WRITES = {
    "model file": lambda p: hybridpgm.save(RBM(4, 3), p),
    "BIF file": lambda p: write_bif(load_network("asia"), p),
    "report": lambda p: write_text_atomically(p, "{}\n", "report"),
    "checkpoint": lambda p: fit(LinearRegression(), regression_data(), checkpoint=p, progress=False, seed=0,
                                max_steps=1),
}


@pytest.mark.parametrize("what", sorted(WRITES))
@pytest.mark.parametrize("below", ["x.pt", "sub/deeper/x.pt"])
def test_a_path_under_a_file_names_that_file(tmp_path, what, below):
    """Old code: "... File exists (EEXIST); the previous model file is kept" (or ENOTDIR further down)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    with pytest.raises((CheckpointError, DataError)) as info:
        WRITES[what](notes / below)
    message = str(info.value)
    assert f"cannot write {what} {str(notes / below)!r}: it lies under {str(notes)!r}, which is a file, not a " \
           "folder" in message
    assert "EEXIST" not in message and "is kept" not in message
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] and notes.read_text() == "not a folder\n"


def test_a_path_under_a_fifo_or_a_dangling_link_names_it(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "absent", tmp_path / "link")
    with pytest.raises(CheckpointError, match=r"lies under '.*fifo', which is a FIFO \(named pipe\), not a folder"):
        write_atomically(tmp_path / "fifo" / "c.pt", {"step": 1}, "checkpoint")
    with pytest.raises(CheckpointError, match=r"lies under '.*link', which is a symbolic link that leads to no "
                                              r"folder, not a folder"):
        write_atomically(tmp_path / "link" / "c.pt", {"step": 1}, "checkpoint")


def _refused_replace(monkeypatch):
    def replace(src, dst, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", os.fspath(dst))
    monkeypatch.setattr(os, "replace", replace)


def test_the_previous_file_is_said_to_be_kept_only_if_there_is_one(tmp_path, monkeypatch):
    """Old code: "the previous report is kept" also for a report written for the first time."""
    kept = tmp_path / "kept.json"
    kept.write_text("old\n")
    _refused_replace(monkeypatch)
    with pytest.raises(CheckpointError, match=r"'.*kept\.json': Input/output error \(EIO\); the previous report is "
                                              r"kept$"):
        write_text_atomically(kept, "new\n", "report")
    with pytest.raises(CheckpointError, match=r"'.*new\.json': Input/output error \(EIO\)$"):
        write_text_atomically(tmp_path / "new.json", "new\n", "report")
    assert sorted(os.listdir(tmp_path)) == ["kept.json"] and kept.read_text() == "old\n"


@pytest.mark.parametrize("below", ["x.png", "sub/deeper/x.png"])
def test_a_figure_under_a_file_names_that_file(tmp_path, below):
    """Old code: "cannot create its folder ...: File exists (EEXIST)" (the figure made its folder itself)."""
    from matplotlib.figure import Figure

    from hybridpgm.diagnostics.figure_files import save_figure

    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    with pytest.raises(DataError, match="cannot write figure '.*x.png': it lies under '.*notes.txt', which is a "
                                        "file, not a folder") as info:
        save_figure(fig, notes / below)
    assert "EEXIST" not in str(info.value) and sorted(os.listdir(tmp_path)) == ["notes.txt"]
