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


class _Counting:
    """A file object that counts the bytes read from it."""

    def __init__(self, handle, counts):
        self.handle, self.counts = handle, counts

    def read(self, size=-1):
        data = self.handle.read(size)
        self.counts.append(len(data))
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_data_past_what_the_header_declares_is_refused_without_reading_it(tmp_path, monkeypatch, suffix):
    """Before, the whole file was read (a 261 kB gzip inflated to 256 MiB in memory: 755 MiB, 1.5 s) and then
    refused; now the reader stops one byte past the declared data."""
    from hybridpgm.data import fashion_mnist

    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    raw = _idx(0x08, (1, 28, 28), b"\0" * (1 << 20))
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    counts = []
    opener = gzip.open if suffix else open
    monkeypatch.setattr(fashion_mnist, "gzip", type("G", (), {"open": staticmethod(
        lambda p, mode: _Counting(gzip.open(p, mode), counts))}))
    monkeypatch.setattr(fashion_mnist, "open", lambda p, mode: _Counting(opener(p, mode), counts), raising=False)
    with pytest.raises(DataError, match=rf"^IDX file {re.escape(repr(str(path)))} holds more than 784 data bytes, "
                                        r"its header says 784$"):
        read_idx(path)
    assert sum(counts) == 16 + 785


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_data_declared_past_max_bytes_is_refused(tmp_path, suffix):
    path = tmp_path / f"big.idx{suffix}"
    raw = _idx(0x08, (1000, 28, 28), b"\0" * 784_000)
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match=rf"^IDX file {re.escape(repr(str(path)))} declares 784000 data bytes \(shape "
                                        r"\(1000, 28, 28\)\) and holds more than max_bytes=1000; pass a larger"):
        read_idx(path, max_bytes=1000)
    assert read_idx(path, max_bytes=784_000).shape == (1000, 28, 28)  # at the limit: read


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_trailing_data_when_max_bytes_is_the_declared_size_is_named_as_such(tmp_path, suffix):
    """Before, a file declaring exactly ``max_bytes`` data bytes and holding one more was refused as holding more
    than max_bytes, with the advice to pass a larger one (which then refused it for its trailing byte)."""
    path = tmp_path / f"trailing.idx{suffix}"
    raw = _idx(0x08, (1, 28, 28), b"\0" * 785)
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match=rf"^IDX file {re.escape(repr(str(path)))} holds more than 784 data bytes, "
                                        r"its header says 784$"):
        read_idx(path, max_bytes=784)


def test_exactly_the_declared_data_reads(tmp_path):
    """Guard (passes before and after): a file of exactly the declared bytes gives its values."""
    path = tmp_path / "small.idx.gz"
    values = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    path.write_bytes(gzip.compress(bytes([0, 0, 0x0C, 3]) + struct.pack(">3I", 2, 3, 4) + values.tobytes()))
    array = read_idx(path)
    assert array.dtype == np.dtype(">i4") and np.array_equal(array, values)
