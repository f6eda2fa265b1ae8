"""The plot helpers' ``path`` (hybridpgm/diagnostics/plots.py): refused with a DataError naming it.  Before, a
folder or a path without suffix was silently written as '<path>.png' beside it, and an unknown suffix, a FIFO,
a path under a file or a read-only folder raised matplotlib's or the OS's raw error."""

import errno
import os
import stat

import pytest
import torch

from hybridpgm.diagnostics import plot_khat
from hybridpgm.errors import DataError
from tests.fifos import fifo_with_reader

KHAT = torch.linspace(-0.2, 0.9, 8)


@pytest.mark.parametrize("name,word", [("khat", "has no suffix"), ("k.jpgg", "has the suffix '.jpgg'")])
def test_a_missing_or_unknown_suffix_is_refused(tmp_path, name, word):
    with pytest.raises(DataError, match=f"{name}'.*{word}.*\\.png"):
        plot_khat(KHAT, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "figs").mkdir()
    with pytest.raises(DataError, match="figs'.*folder"):
        plot_khat(KHAT, tmp_path / "figs")
    assert sorted(os.listdir(tmp_path)) == ["figs"] and os.listdir(tmp_path / "figs") == []


def test_a_fifo_is_refused_at_once_and_kept(tmp_path):
    fifo = tmp_path / "fig.png"
    with fifo_with_reader(fifo):  # the old code's open() returned, not blocked
        with pytest.raises(DataError, match="fig.png'.*FIFO"):
            plot_khat(KHAT, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "khat.png").write_bytes(b"kept")
    with pytest.raises(DataError, match="khat.png/x.png'.*folder"):
        plot_khat(KHAT, tmp_path / "khat.png" / "x.png")
    assert (tmp_path / "khat.png").read_bytes() == b"kept"


def test_a_refused_write_names_the_path_and_reason(tmp_path, monkeypatch):
    """A read-only folder (as root, a permission check would pass: the OS error is simulated)."""
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(DataError, match="ro.png'.*EACCES"):
        plot_khat(KHAT, tmp_path / "ro.png")
    assert os.listdir(tmp_path) == []


def test_a_bytes_path_is_refused_by_name(tmp_path):
    with pytest.raises(DataError, match="got bytes"):
        plot_khat(KHAT, os.fsencode(tmp_path / "k.png"))


@pytest.mark.parametrize("name", ["k.png", "k.PDF", "sub/k.svg"])
def test_a_supported_suffix_is_written(tmp_path, name):
    from hybridpgm.diagnostics.figure_files import figure_formats

    assert {"png", "pdf", "svg"} <= set(figure_formats())
    plot_khat(KHAT, tmp_path / name)
    assert (tmp_path / name).stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / name).parent.iterdir()) == [os.path.basename(name)]


def test_pgf_is_not_offered_and_a_format_that_cannot_be_drawn_is_named(tmp_path, monkeypatch):
    """The review of the first version found ``.pgf`` listed (matplotlib's PGF backend writes raster images beside
    a named file, so drawing it into memory raised a raw ValueError)."""
    from matplotlib.figure import Figure

    from hybridpgm.diagnostics.figure_files import figure_formats

    assert "pgf" not in figure_formats() and "png" in figure_formats()
    with pytest.raises(DataError, match=r"k\.pgf"):
        plot_khat(torch.tensor([0.1, 0.8]), tmp_path / "k.pgf")

    def cannot_draw(self, *args, **kwargs):
        raise RuntimeError("'xelatex' not found")

    monkeypatch.setattr(Figure, "savefig", cannot_draw)
    with pytest.raises(DataError, match=r"cannot draw figure .*k\.pdf' as pdf: 'xelatex' not found"):
        plot_khat(torch.tensor([0.1, 0.8]), tmp_path / "k.pdf")
    assert os.listdir(tmp_path) == []
