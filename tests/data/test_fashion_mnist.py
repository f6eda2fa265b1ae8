"""read_idx on crafted IDX headers (hybridpgm/data/fashion_mnist.py); the other IDX tests are in
tests/data/test_data.py.  Found by a fuzzing audit: these headers gave numpy's raw ValueError."""

import gzip
import re
import struct

import numpy as np
import pytest

from hybridpgm.data import read_idx
from hybridpgm.errors import DataError


def _idx(code: int, dims, body: bytes = b"") -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize("dims, code, body, match", [
    # 2**64 elements: np.prod wrapped to 0 in int64, so an empty body passed the size check
    ((65536,) * 4, 0x08, b"", r"holds 0 data bytes, its header says 18446744073709551616$"),
    ((65536,) * 4, 0x08, b"\x01", r"holds 1 data bytes, its header says 18446744073709551616$"),
    # a 0 dimension makes the product 0 (the empty body is right), but numpy cannot build the shape
    ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), 0x08, b"",
     r"declares the impossible shape \(0, 4294967295, 4294967295, 4294967295\): "),
    ((2**31, 0, 2**31), 0x0E, b"", r"declares the impossible shape \(2147483648, 0, 2147483648\): "),
])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_header_whose_shape_cannot_exist_is_a_data_error_naming_the_file(tmp_path, dims, code, body, match,
                                                                            suffix):
    path = tmp_path / f"crafted.idx{suffix}"
    raw = _idx(code, dims, body)
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match=rf"^IDX file {re.escape(repr(str(path)))} {match}") as caught:
        read_idx(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("dims", [(0,), (0, 28, 28), (3, 0)])
def test_an_empty_idx_array_still_reads(tmp_path, dims):
    """Guard (passes before and after): a 0 dimension beside ones numpy can index is a valid, empty array."""
    path = tmp_path / "empty.idx"
    path.write_bytes(_idx(0x08, dims))
    array = read_idx(path)
    assert array.shape == dims and array.dtype == np.uint8 and array.size == 0
