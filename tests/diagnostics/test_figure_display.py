"""Figures that draw themselves in IPython without pyplot (hybridpgm/diagnostics/figure_display.py)."""

import copy
import io
import json
import pickle
import subprocess
import sys
import types

import IPython
import pytest
from IPython.core.formatters import DisplayFormatter
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from hybridpgm.diagnostics import figure_display
from hybridpgm.diagnostics.figure_display import PNGRepr, displayable, inline_printer_active
from hybridpgm.diagnostics.plots import plot_khat

PNG = b"\x89PNG\r\n\x1a\n"


def _figure():
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1, 4])
    return fig


def test_a_displayable_figure_is_a_png_for_ipython_and_keeps_its_text():
    """Before, a figure made without pyplot showed as '<Figure size 600x350 with 1 Axes>' without the inline
    backend: IPython found no way to draw it."""
    fig = plot_khat([0.1, 0.6, 0.9])
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"].startswith(PNG)
    assert data["text/plain"] == "<Figure size 600x350 with 1 Axes>"


def test_an_empty_figure_shows_as_text_as_under_the_inline_backend():
    data, _ = DisplayFormatter().format(displayable(Figure()))
    assert "image/png" not in data and data["text/plain"].startswith("<Figure size")


def test_the_inline_backend_s_printer_draws_it_and_ours_is_not_called(monkeypatch):
    calls = []
    monkeypatch.setattr(PNGRepr, "__call__", lambda self: calls.append(self) or b"ours")
    formatter = DisplayFormatter()
    formatter.formatters["image/png"].for_type(Figure, lambda fig: b"inline")  # what %matplotlib inline does
    data, _ = formatter.format(displayable(_figure()))
    assert data["image/png"] == b"inline" and calls == []


def test_where_the_inline_backend_draws_svg_no_png_is_added(monkeypatch):
    """One image per display: the inline backend's format, not ours as well."""
    formatter = DisplayFormatter()
    formatter.formatters["image/svg+xml"].for_type(Figure, lambda fig: "<svg/>")
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(display_formatter=formatter))
    assert inline_printer_active()
    data, _ = formatter.format(displayable(_figure()))
    assert data["image/svg+xml"] == "<svg/>" and "image/png" not in data


def test_no_printer_outside_a_shell():
    assert not inline_printer_active()  # pytest runs no IPython shell


@pytest.mark.parametrize("formats, expected", [({"png"}, ["image/png", "text/plain"]),
                                               ({"svg"}, ["image/svg+xml", "text/plain"])])
def test_with_ipython_s_own_inline_registration(formats, expected):
    """IPython's select_figure_formats (what %matplotlib inline runs) in a fresh interpreter: its printer wins,
    and the figure is one image."""
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from IPython.core.pylabtools import select_figure_formats\n"
        "from hybridpgm.diagnostics.plots import plot_khat\n"
        "shell = InteractiveShell.instance()\n"
        f"select_figure_formats(shell, {formats!r})\n"
        "data, _ = shell.display_formatter.format(plot_khat([0.1, 0.6, 0.9]))\n"
        "import json; print(json.dumps([sorted(data), type(data.get('image/png')).__name__]))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={"MPLBACKEND": "agg", "OMP_NUM_THREADS": "1"}).stdout
    # the inline printer's PNG is base64 text; ours would be bytes
    assert json.loads(out.splitlines()[-1]) == [expected, "str" if "png" in formats else "NoneType"]


def test_drawing_changes_no_backend_no_rcparams_and_imports_no_pyplot():
    code = (
        "import sys, matplotlib\n"
        "rc = matplotlib.rcParams\n"
        "before = {k: dict.__getitem__(rc, k) for k in rc}\n"
        "from IPython.core.formatters import DisplayFormatter\n"
        "from hybridpgm.diagnostics.plots import plot_khat\n"
        "assert DisplayFormatter().format(plot_khat([0.1, 0.9]))[0]['image/png'][:4] == b'\\x89PNG'\n"
        "assert {k: dict.__getitem__(rc, k) for k in rc} == before\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={"OMP_NUM_THREADS": "1"})


def test_savefig_and_the_figure_class_are_as_before():
    fig = displayable(_figure())
    assert not hasattr(Figure, "_repr_png_") and "_repr_png_" in vars(fig)
    shown = fig._repr_png_()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    assert buffer.getvalue() == shown  # the same drawing as savefig's
    assert type(fig.canvas) is FigureCanvasBase  # no canvas (backend) was attached by drawing


@pytest.mark.parametrize("clone", [lambda f: pickle.loads(pickle.dumps(f)), copy.deepcopy], ids=["pickle", "deepcopy"])
def test_a_copy_still_draws_itself_not_the_original(clone):
    fig = plot_khat([0.1, 0.6, 0.9])
    again = clone(fig)
    assert isinstance(again, Figure) and again._repr_png_.figure is again
    again.axes[0].set_title("changed")
    assert DisplayFormatter().format(again)[0]["image/png"] != fig._repr_png_()


@pytest.mark.slow  # two Jupyter kernels: about 15 s
def test_a_plot_is_an_image_in_a_jupyter_kernel_with_and_without_inline():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for first in ["", "%matplotlib inline"]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(first + "\nfrom hybridpgm.diagnostics import plot_khat\n"
                                                      "plot_khat([0.1, 0.6, 0.9])")]
        nbclient.NotebookClient(nb, timeout=90, kernel_name="python3").execute()
        results = [o for o in nb.cells[0].outputs if o["output_type"] == "execute_result"]
        assert [sorted(o["data"]) for o in results] == [["image/png", "text/plain"]], first


def test_the_module_names_what_it_exports():
    assert figure_display.__all__ == ["PNGRepr", "displayable", "inline_printer_active"]
