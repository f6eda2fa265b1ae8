"""A :class:`~hybridpgm.data.binarize.DrawnExamples` that counts the lists of examples made, for the tests of
``fetch_batch`` over torch Subsets (tests/train/test_subset_reads.py, tests/train/test_batches_subset.py)."""

from __future__ import annotations

from types import ModuleType

from hybridpgm.data.binarize import DrawnExamples


class CountedExamples(DrawnExamples):
    """DrawnExamples that counts how many lists of examples were made (:attr:`made`)."""

    __slots__ = ()
    made = 0

    def __init__(self, batch):
        type(self).made += 1
        super().__init__(batch)


def counting_examples(monkeypatch, module: ModuleType) -> type[CountedExamples]:
    """Put :class:`CountedExamples`, its count at 0, in place of ``module.DrawnExamples`` for the test (the module
    whose code makes the lists: :mod:`hybridpgm.data.binarize`, :mod:`hybridpgm.train.batches`)."""
    monkeypatch.setattr(module, "DrawnExamples", CountedExamples)
    monkeypatch.setattr(CountedExamples, "made", 0)
    return CountedExamples
