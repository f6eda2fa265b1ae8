"""The path given to read_bif and write_bif (hybridpgm/graphs/bif.py): one path policy, named errors, an atomic
write.  Before, write_bif opened the path with a plain ``open``/``gzip.open``: a raw FileNotFoundError for a
missing folder, IsADirectoryError for a folder, a partial file on a full disk, a block on a FIFO; a bytes path
was a raw TypeError."""

import errno
import gzip
import os
import stat

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import read_bif, write_bif
from tests.fifos import fifo_with_reader
from tests.graphs.bn_helpers import random_bn, single_thread  # noqa: F401 (autouse fixture)


def _same(a, b):
    assert a.nodes == b.nodes and a.edges == b.edges
    for v in a.nodes:
        torch.testing.assert_close(a.cpds[v].probs.detach(), b.cpds[v].probs.detach())


@pytest.mark.parametrize("name", ["net.bif", "net.bif.gz"])
def test_round_trip_still_equal(tmp_path, name):
    bn = random_bn(4, 5, max_card=3)
    path = tmp_path / name
    write_bif(bn, path)
    _same(read_bif(path), bn)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary file left


def test_a_missing_folder_is_created(tmp_path):
    """Chosen: created (as checkpoints, reports and figures are), rather than refused."""
    bn = random_bn(3, 1, max_card=2)
    path = tmp_path / "new" / "deeper" / "net.bif"
    write_bif(bn, path)
    _same(read_bif(path), bn)


def test_a_folder_is_refused_by_name(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}.*directory"):
        write_bif(random_bn(3, 2, max_card=2), tmp_path)


def test_a_fifo_is_refused_at_once_and_kept(tmp_path):
    fifo = tmp_path / "net.bif"
    with fifo_with_reader(fifo) as reader:  # the old code's open() returned, not blocked
        with pytest.raises(DataError, match="FIFO"):
            write_bif(random_bn(3, 3, max_card=2), fifo)
        assert os.read(reader, 100) == b""  # nothing was written into the pipe
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "target.bif").write_text("kept\n")
    os.symlink("target.bif", tmp_path / "link.bif")
    with pytest.raises(DataError, match="symbolic link"):
        write_bif(random_bn(3, 4, max_card=2), tmp_path / "link.bif")
    assert (tmp_path / "target.bif").read_text() == "kept\n"


@pytest.mark.parametrize("call", [lambda p: read_bif(p), lambda p: write_bif(random_bn(3, 5, max_card=2), p)])
def test_a_bytes_path_is_refused_by_name(tmp_path, call):
    with pytest.raises(DataError, match="BIF file path must be a str or os.PathLike, got bytes"):
        call(os.fsencode(tmp_path / "x.bif"))


@pytest.mark.parametrize("name", ["net.bif", "net.bif.gz"])
def test_a_full_disk_keeps_the_previous_file_whole(tmp_path, monkeypatch, name):
    path = tmp_path / name
    write_bif(random_bn(3, 6, max_card=2), path)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DataError, match=f"{name}.*ENOSPC"):
        write_bif(random_bn(4, 7, max_card=3), path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == [name]
    if name.endswith(".gz"):
        gzip.decompress(before)  # still a whole gzip stream


def test_a_bundled_name_without_pgmpy_says_so_and_lists_no_empty_search(monkeypatch):
    """Audit (packaging): without pgmpy the message ended in "(looked in [])"."""
    import sys

    from hybridpgm.errors import DataError
    from hybridpgm.graphs.bif import load_network

    monkeypatch.setitem(sys.modules, "pgmpy", None)  # import pgmpy raises ImportError
    with pytest.raises(DataError, match=r"pgmpy is not installed") as caught:
        load_network("alarm")
    assert "looked in" not in str(caught.value)
