"""Images tiled into one array for one imshow (hybridpgm/diagnostics/image_tiles.py)."""

import numpy as np
import pytest

from hybridpgm.diagnostics.image_tiles import separator_width, tile_images


@pytest.mark.parametrize("n, columns, pad", [(1, 1, 1), (5, 2, 1), (6, 3, 0), (7, 3, 2), (3, 5, 1)])
def test_each_image_lies_at_its_place_and_the_rest_is_masked(n, columns, pad):
    h, w = 3, 4
    images = np.arange(1, n * h * w + 1, dtype=np.float32).reshape(n, h, w)
    mosaic = tile_images(images, columns, pad)
    rows = -(-n // columns)
    assert mosaic.shape == (rows * (h + pad) - pad, columns * (w + pad) - pad) and mosaic.dtype == np.float32
    seen = np.zeros(mosaic.shape, bool)
    for i in range(n):
        r, c = divmod(i, columns)
        at = (slice(r * (h + pad), r * (h + pad) + h), slice(c * (w + pad), c * (w + pad) + w))
        np.testing.assert_array_equal(mosaic.data[at], images[i])
        seen[at] = True
    np.testing.assert_array_equal(np.ma.getmaskarray(mosaic), ~seen)
    assert (mosaic.data[~seen] == 0).all()  # finite beneath the mask: two mosaics of the same images are equal


def test_the_images_are_copied_and_keep_their_nan_unmasked():
    images = np.zeros((2, 2, 2))
    images[1, 0, 1] = np.nan
    mosaic = tile_images(images, 2, 1)
    mosaic[0, 0] = 5.0
    assert images[0, 0, 0] == 0.0 and np.isnan(mosaic.data[0, 4]) and not np.ma.getmaskarray(mosaic)[0, 4]
    assert tile_images(np.ones((1, 2, 2), np.uint8), 1, 1).dtype == np.float64


def test_separator_width_is_an_eighth_of_the_longer_side_and_at_least_one_pixel():
    assert [separator_width(s) for s in ((1, 1), (8, 8), (9, 2), (28, 28), (64, 32))] == [1, 1, 2, 4, 8]
