"""``benchmarks.common.write_result`` writes through hybridpgm's atomic writer: a failed write leaves no temporary
file and keeps the previous result.  Before, it wrote ``<name>.json.tmp`` and renamed it, with nothing removing
the temporary when the write or the rename failed (a full disk, a file size limit)."""

import errno
import json
import os

import pytest

from benchmarks import common
from hybridpgm.errors import CheckpointError


def _refused_replace(monkeypatch):
    def replace(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))
    monkeypatch.setattr(os, "replace", replace)


def test_a_failed_write_leaves_no_temporary_and_keeps_the_previous_result(tmp_path, monkeypatch, capsys):
    """Old code: ``demo.json.tmp`` was left beside the result, and the OSError named no benchmark file."""
    out = tmp_path / "results" / "demo.json"  # its folder is created by the write
    common.write_result("demo", {"x": 1}, out=str(out))
    assert json.loads(out.read_text())["x"] == 1 and os.listdir(out.parent) == ["demo.json"]
    _refused_replace(monkeypatch)
    with pytest.raises(CheckpointError, match=r"cannot write benchmark result '.*demo\.json': No space left on "
                                              r"device \(ENOSPC\); the previous benchmark result is kept"):
        common.write_result("demo", {"x": 2}, out=str(out))
    assert os.listdir(out.parent) == ["demo.json"] and json.loads(out.read_text())["x"] == 1
