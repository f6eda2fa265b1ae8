"""Images tiled into one array, so that a grid of ``N`` images is one ``imshow`` on one axes
(:func:`~hybridpgm.diagnostics.plots.plot_image_grid`) rather than ``N`` axes, whose layout costs about 20 ms
each in matplotlib.

Image :math:`i` of ``N`` (``H x W``) goes to row :math:`r = \\lfloor i / C \\rfloor` and column :math:`c = i
\\bmod C` of a grid of ``C`` columns and :math:`R = \\lceil N / C \\rceil` rows, with its top-left pixel at
:math:`(r (H + p),\\ c (W + p))` of the ``(R (H + p) - p) x (C (W + p) - p)`` mosaic.  The ``p``-pixel
separators between images and the cells after the last image are masked (a
:class:`numpy.ma.MaskedArray`, 0 beneath the mask), which ``imshow`` leaves transparent: the figure's
background shows there, as it did between separate axes, and as it does at an image's own NaN pixels.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["separator_width", "tile_images"]


def separator_width(image_shape: tuple[int, int]) -> int:
    """The separator between tiled images: an eighth of the longer side, at least one pixel (28 x 28 digits get
    4 pixels, 8 x 8 images 1)."""
    return max(1, math.ceil(max(image_shape) / 8))


def tile_images(images: np.ndarray, columns: int, pad: int) -> np.ma.MaskedArray:
    """``N x H x W`` images as one ``(R (H + pad) - pad) x (C (W + pad) - pad)`` masked array (see the module's
    notes; ``C = columns``, :math:`R = \\lceil N / C \\rceil`), masked between the images and after the last one.

    :param images: ``N x H x W`` real grey levels, ``N >= 1`` (their NaN are kept, unmasked).
    :param columns: images per row, a positive integer.
    :param pad: the separator's width in pixels, a non-negative integer.
    :returns: a new array of the images' dtype (float64 for integers).
    """
    n, h, w = images.shape
    rows = math.ceil(n / columns)
    dtype = images.dtype if np.issubdtype(images.dtype, np.floating) else np.float64
    cells = np.zeros((rows * columns, h + pad, w + pad), dtype)
    gaps = np.ones(cells.shape, bool)
    cells[:n, :h, :w] = images
    gaps[:n, :h, :w] = False

    def mosaic(a: np.ndarray) -> np.ndarray:
        a = a.reshape(rows, columns, h + pad, w + pad).transpose(0, 2, 1, 3)
        return a.reshape(rows * (h + pad), columns * (w + pad))[: rows * (h + pad) - pad, : columns * (w + pad) - pad]

    return np.ma.MaskedArray(mosaic(cells), mask=mosaic(gaps))
