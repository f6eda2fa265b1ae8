"""Which class defines a method, and whether a fast companion goes with the method it stands for."""

from __future__ import annotations

import gc
import weakref

from hybridpgm.method_owners import goes_with, method_owner


class _Base:
    def method(self):
        ...

    def companion(self):
        ...


class _OverridesMethod(_Base):
    def method(self):
        ...


class _OverridesBoth(_OverridesMethod):
    def companion(self):
        ...


class _CompanionOnly:
    def companion(self):
        ...


def test_a_companion_goes_with_the_method_of_its_own_class_or_a_base():
    assert method_owner(_OverridesBoth, "method") is _OverridesMethod and method_owner(_Base, "nothing") is None
    assert goes_with(_Base, "companion", "method")
    assert not goes_with(_OverridesMethod, "companion", "method")  # inherited: it stands for _Base.method
    assert goes_with(_OverridesBoth, "companion", "method")
    assert goes_with(_CompanionOnly, "companion", "method")  # no method to disagree with
    assert not goes_with(_Base, "nothing", "method")


def test_the_cache_keeps_no_class_alive():
    refs = []
    for _ in range(3):  # a notebook cell, re-run
        class Cell(_Base):
            def method(self):
                ...

        assert not goes_with(Cell, "companion", "method") and not goes_with(Cell, "companion", "method")
        refs.append(weakref.ref(Cell))
        del Cell
    gc.collect()
    assert all(ref() is None for ref in refs)
