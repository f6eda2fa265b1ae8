"""A FIFO to write into, for tests of writers that must refuse one (reading it must never block the test)."""

import contextlib
import os


@contextlib.contextmanager
def fifo_with_reader(path):
    """Make a FIFO at ``path`` and open its read end without blocking, so that a writer that (wrongly) opens it
    returns instead of waiting for a reader; yields the read end's descriptor, closed on exit."""
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield reader
    finally:
        os.close(reader)
