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


def test_no_class_is_kept_alive():
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


def test_a_method_patched_onto_a_class_after_first_use_is_seen():
    """A method set on the class after ``goes_with`` answered for it (a notebook cell re-run) changes the answer,
    both ways."""

    class Cell(_Base):
        pass

    assert goes_with(Cell, "companion", "method")
    Cell.method = lambda self: None  # now the inherited companion stands for another method
    assert not goes_with(Cell, "companion", "method")
    Cell.companion = lambda self: None  # and its own companion goes with it again
    assert goes_with(Cell, "companion", "method")


def test_a_crf_subclass_given_its_own_score_after_first_use_scores_with_it():
    """``LinearChainCRF.log_prob`` asks ``goes_with`` on each call: a ``score`` patched onto a subclass after a
    first ``log_prob`` is used as the definition says, ``self.score(value) - self.log_partition``."""
    import torch

    from hybridpgm.graphs.crf import LinearChainCRF

    class MyCRF(LinearChainCRF):
        pass

    torch.manual_seed(0)
    crf, y = MyCRF(torch.randn(4, 3), torch.randn(3, 3)), torch.tensor([0, 1, 2, 1])
    before = crf.log_prob(y)
    MyCRF.score = lambda self, value: LinearChainCRF.score(self, value) + 1.0
    torch.testing.assert_close(crf.log_prob(y), before + 1.0)
