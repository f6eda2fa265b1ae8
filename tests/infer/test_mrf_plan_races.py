"""The MRF structure cache's read-then-update survives another thread's eviction in between
(:mod:`hybridpgm.infer.mrf_plan`: ``_STRUCTURES``, ``_TOO_COSTLY``).

The caches are module globals, shared by every thread: each read of an entry was followed by ``move_to_end`` of
its key, and each write of a verdict by ``move_to_end`` too, so another thread's ``popitem`` in between raised
``KeyError`` out of a query (THREADS audit, session 36; seen in the code, the interleaving forced here)."""

from collections import OrderedDict

from hybridpgm.graphs import ising_grid
from hybridpgm.infer import mrf_plan


class _EvictedAfterRead(OrderedDict):
    """Every read of a present key is followed by its eviction (another thread's ``popitem`` of it)."""

    def get(self, key, default=None):
        value = super().get(key, default)
        self.pop(key, None)
        return value


class _EvictedAfterWrite(OrderedDict):
    """Every write is followed by the key's eviction."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.pop(key, None)


def test_a_cached_structure_read_then_evicted(monkeypatch):
    """Fails before: KeyError from ``_STRUCTURES.move_to_end``; the structure read is used all the same."""
    monkeypatch.setattr(mrf_plan, "_STRUCTURES", OrderedDict())
    fg = ising_grid(3, 3, 0.3).factor_graph()
    first = mrf_plan._structure(fg)
    monkeypatch.setattr(mrf_plan, "_STRUCTURES", _EvictedAfterRead(mrf_plan._STRUCTURES))
    assert mrf_plan._structure(fg) is first
    assert mrf_plan._structure(fg) is not first  # evicted: built again


def test_a_too_costly_verdict_read_or_written_then_evicted(monkeypatch):
    """Fails before: KeyError from ``_TOO_COSTLY.move_to_end`` after the read of a verdict, and after its write."""
    monkeypatch.setattr(mrf_plan, "SEARCH_ABOVE", 0)  # every structure is too costly for a cheap_only call
    monkeypatch.setattr(mrf_plan, "_STRUCTURES", OrderedDict())
    monkeypatch.setattr(mrf_plan, "_TOO_COSTLY", OrderedDict())
    fg = ising_grid(3, 3, 0.3).factor_graph()
    assert mrf_plan._structure(fg, cheap_only=True) is None
    assert len(mrf_plan._TOO_COSTLY) == 1
    monkeypatch.setattr(mrf_plan, "_TOO_COSTLY", _EvictedAfterRead(mrf_plan._TOO_COSTLY))
    assert mrf_plan._structure(fg, cheap_only=True) is None  # the verdict read, then evicted
    monkeypatch.setattr(mrf_plan, "_TOO_COSTLY", _EvictedAfterWrite())
    assert mrf_plan._structure(fg, cheap_only=True) is None  # a new verdict written, then evicted
    assert not mrf_plan._STRUCTURES
