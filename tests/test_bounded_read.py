"""Reading at most a number of bytes, in chunks (hybridpgm/bounded_read.py)."""

import gzip
import io

import pytest

import hybridpgm.bounded_read as bounded_read
from hybridpgm.bounded_read import read_at_most


class _CountingReads(io.BytesIO):
    """A file that records the size of every ``read`` asked of it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size=-1):
        self.asked.append(size)
        return super().read(size)


@pytest.mark.parametrize("count, expected", [(0, b""), (3, b"abc"), (10, b"abcdefghij"), (10**12, b"abcdefghij")])
def test_reads_at_most_count_bytes_fewer_only_at_the_end(count, expected):
    assert read_at_most(io.BytesIO(b"abcdefghij"), count) == expected


def test_never_asks_for_more_than_one_chunk_at_once(monkeypatch):
    """A bound of 2**40 bytes must not become one ``read(2**40)``, which a gzip stream answers by reserving it."""
    monkeypatch.setattr(bounded_read, "CHUNK", 4)
    handle = _CountingReads(b"abcdefghij")
    assert read_at_most(handle, 2**40) == b"abcdefghij"
    assert handle.asked == [4, 4, 4, 4] and max(handle.asked) <= 4
    handle = _CountingReads(b"abcdefghij")
    assert read_at_most(handle, 6) == b"abcdef" and handle.asked == [4, 2]


def test_reads_a_gzip_stream_past_its_compressed_size():
    data = bytes(range(256)) * 4000
    assert read_at_most(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data))), len(data) + 1) == data
