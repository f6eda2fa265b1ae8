"""Writing a figure to a file: the formats matplotlib can write, the checks of the path, and a write through a
temporary file and a rename (no partial image on a full disk); see :mod:`hybridpgm.diagnostics.plots`."""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure

from hybridpgm.diagnostics.figure_display import displayable
from hybridpgm.errors import CheckpointError, DataError
from hybridpgm.paths import file_path
from hybridpgm.train.atomic_write import check_replaceable, write_atomically

__all__ = ["figure_formats", "figure_path", "save_figure"]

#: formats matplotlib lists that cannot be drawn into memory: PGF writes its raster images beside a named file
#: (and needs LaTeX)
_NOT_IN_MEMORY = frozenset({"pgf"})


def figure_formats() -> list[str]:
    """The file suffixes a figure can be written as (``"png"``, ``"pdf"``, ``"svg"`` ...: matplotlib's canvas'
    ``get_supported_filetypes()`` less PGF, which cannot be drawn into memory first), sorted."""
    return sorted(set(Figure().canvas.get_supported_filetypes()) - _NOT_IN_MEMORY)


def figure_path(path: str | os.PathLike) -> Path:
    """``path`` checked as the file a figure is written to (:func:`~hybridpgm.paths.file_path`'s policy): its
    suffix names a format matplotlib writes (:func:`figure_formats`; the format is never guessed, so a folder
    or ``"khat"`` is not silently written as ``khat.png`` beside it), and it is absent or a regular file.

    :raises DataError: naming the path and what is wrong with it.
    """
    path = file_path(path, "figure")
    if path.is_dir():
        raise DataError(f"cannot write figure {str(path)!r}: it is a folder; pass the path of an image file in it")
    formats = figure_formats()
    suffix = path.suffix[1:].lower()
    if suffix not in formats:
        found = f"has the suffix {path.suffix!r}" if suffix else "has no suffix"
        raise DataError(f"cannot write figure {str(path)!r}: it {found}; name the file with one matplotlib "
                        f"writes ({', '.join('.' + f for f in formats)})")
    try:
        check_replaceable(path, "figure")
    except CheckpointError as error:
        raise DataError(str(error)) from None
    return path


def save_figure(fig: Figure, path: str | os.PathLike | None, layout: bool = True) -> Figure:
    """Lay ``fig`` out (``tight_layout``, unless ``layout`` is false: laid out by its maker), write it to
    ``path`` (if given; :func:`figure_path`) through a temporary file and a rename, and make it show itself in a
    notebook.

    :raises DataError: ``path`` is refused by :func:`figure_path`, or the OS refused the write (naming the path
        and the reason: no such folder possible, permission denied, no space ...; no partial file is left).
    """
    if layout:
        fig.tight_layout()
    if path is not None:
        path = figure_path(path)
        image = io.BytesIO()  # drawn first, so that nothing is written for a figure matplotlib cannot draw
        try:
            fig.savefig(image, format=path.suffix[1:].lower(), dpi=100)
        except (ValueError, RuntimeError, OSError) as error:  # a format's own needs (a program it runs)
            raise DataError(f"cannot draw figure {str(path)!r} as {path.suffix[1:].lower()}: {error}") from error
        try:  # its folders are created by the write, as checkpoints and reports are written
            write_atomically(path, image.getvalue(), "figure", save=lambda data, file: file.write(data))
        except CheckpointError as error:
            raise DataError(str(error)) from error.__cause__
    return displayable(fig)
