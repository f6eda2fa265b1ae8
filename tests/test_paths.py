"""One policy for the paths of the files hybridpgm reads and writes (hybridpgm/paths.py)."""

import os
from pathlib import Path

import pytest

from hybridpgm.errors import CheckpointError, DataError
from hybridpgm.paths import file_path


def test_str_and_pathlike_are_read_and_a_leading_tilde_is_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert file_path("a/b.pt", "model file") == Path("a/b.pt")
    assert file_path(Path("c.pt"), "model file") == Path("c.pt")
    assert file_path("~/runs/ck.pt", "checkpoint") == tmp_path / "runs" / "ck.pt"


@pytest.mark.parametrize("bad", [b"ck.pt", 3, None])
def test_other_values_are_refused_by_name(bad):
    with pytest.raises(CheckpointError, match=rf"the checkpoint path must be a str or os.PathLike, got "
                                              rf"{type(bad).__name__}"):
        file_path(bad, "checkpoint", CheckpointError)


def test_an_empty_path_and_one_ending_with_a_separator_are_refused():
    with pytest.raises(DataError, match="the BIF file path is empty"):
        file_path("", "BIF file")
    with pytest.raises(DataError, match=r"'newdir/' ends with a separator, so it names a folder"):
        file_path("newdir" + os.sep, "BIF file")
