"""The plan BeliefPropagation remembers for the last graph (hybridpgm.infer.bp_last_graph).

The memo holds the storages of the graph's ``valid`` and ``variables`` (so that a ``.data =`` replacement cannot
take their addresses and match its key: tests/infer/test_belief_propagation_replaced_data.py); it must not keep
them past the graph."""

import copy
import gc
import pickle

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import BeliefPropagation


def _net() -> MarkovNet:
    net = MarkovNet({"a": 2, "b": 2, "c": 2})
    net.add_factors("e", [["a", "b"], ["b", "c"]], torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(1)))
    return net


def test_the_memo_goes_with_its_graph():
    """Passes on the old code too, which held weak references only: it guards the storages the memo holds now."""
    bp = BeliefPropagation(num_iters=5, tol=0.0)
    fg = _net().factor_graph({"a": torch.tensor([-1, -1, -1])})  # a [3, 3, 2] mask of its own
    bp(fg)
    assert bp._binary_plan(fg) is bp._binary_plan(fg) is not None  # remembered
    valid = StorageWeakRef(fg.valid.untyped_storage())
    del fg
    gc.collect()
    assert valid.expired()


def test_a_run_belief_propagation_is_copied_and_pickled_without_its_memo():
    """Found with the memo's rewrite: after a run, ``pickle.dumps(bp)`` raised ``TypeError: cannot pickle
    'weakref.ReferenceType' object`` (the memo's weak references); a copy now remembers nothing, and answers as the
    original."""
    bp, fg = BeliefPropagation(num_iters=5, tol=0.0), _net().factor_graph()
    want = bp(fg).marginals
    for other in (pickle.loads(pickle.dumps(bp)), copy.deepcopy(bp)):
        assert other._memo._entry is None
        torch.testing.assert_close(other(fg).marginals, want, rtol=0, atol=0)
