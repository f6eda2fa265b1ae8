"""Figures that show themselves in a notebook, without pyplot or a backend.

The plot helpers (:mod:`hybridpgm.diagnostics.plots`) build a :class:`matplotlib.figure.Figure` directly, so
that they leave matplotlib's backend and pyplot's figure list alone.  IPython, though, draws a bare ``Figure``
as an image only where the inline backend registered a printer for the ``Figure`` type (``%matplotlib
inline``, or a ``pyplot`` import in a kernel that defaults to it); elsewhere a cell's value shows as the text
``<Figure size 600x350 with 1 Axes>``.  :func:`displayable` gives one figure an instance attribute
``_repr_png_`` (:class:`PNGRepr`), the method IPython's PNG formatter looks for on the object, so it renders
as a PNG in every kernel, with no backend chosen and no ``rcParams`` changed:

* IPython's printers registered for a type come before the object's ``_repr_*_`` methods, so where the
  inline backend is active its own printer (with its figure format and resolution settings) draws the
  figure, once; and where it draws another format (``InlineBackend.figure_formats = ["svg"]``) the PNG
  stands aside (:func:`inline_printer_active`): one image in the display, never two;
* a class has no ``_repr_png_``: other figures, and :meth:`~matplotlib.figure.Figure.savefig`, are as before;
* the attribute pickles and deep-copies with its figure (it holds only the figure), and the copy draws
  itself, not the original.

Only the IPython frontends that ask for ``image/png`` call it (a terminal asks for text only); each call
renders the figure with the Agg canvas, as ``savefig`` would.
"""

from __future__ import annotations

import io
import sys

from matplotlib.figure import Figure

__all__ = ["PNGRepr", "displayable", "inline_printer_active"]

#: the display formats IPython's inline backend may draw a figure in (``text/plain`` is not one)
_IMAGE_FORMATS = ("image/png", "image/jpeg", "image/svg+xml", "application/pdf")


def inline_printer_active() -> bool:
    """Whether the running IPython shell has a printer for :class:`~matplotlib.figure.Figure` in an image
    format, as the inline backend registers; ``False`` outside IPython (IPython is not imported for this)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None) or {}
    for mime in _IMAGE_FORMATS:
        try:
            formatters[mime].lookup_by_type(Figure)
            return True
        except (KeyError, AttributeError):
            continue
    return False


class PNGRepr:
    """The ``_repr_png_`` of one figure: its PNG bytes, as ``figure.savefig(..., format="png",
    bbox_inches="tight")`` writes them at the figure's own dpi (what the inline backend shows).

    :param figure: the figure to draw.
    """

    def __init__(self, figure: Figure):
        self.figure = figure

    def __call__(self) -> bytes | None:
        """The PNG; ``None`` (IPython then shows the text) for a figure with nothing drawn in it, as the
        inline backend's printer, and where that printer draws the figure itself in another format."""
        if (not self.figure.axes and not self.figure.lines) or inline_printer_active():
            return None
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def displayable(figure: Figure) -> Figure:
    """``figure``, drawn as a PNG when it is a notebook cell's value or passed to ``IPython.display``.

    >>> from matplotlib.figure import Figure
    >>> fig = displayable(Figure())
    >>> fig.add_subplot().plot([0, 1]) and fig._repr_png_()[:4]
    b'\\x89PNG'
    """
    figure._repr_png_ = PNGRepr(figure)
    return figure
