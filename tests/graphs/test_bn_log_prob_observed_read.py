"""The missing-value pattern ``BayesNet.log_prob`` hands to the model it traces (hybridpgm/graphs/bn_log_prob.py,
``_observed_read``) stays with its own call: in a context variable, not on the instance.

Before (848527f), on the instance's ``__dict__``: two threads' log_prob calls that interleave (A enters, B enters,
A returns, B returns) left A's columns and pattern installed after both had returned, and a later call with those
very tensors, changed in place since, took the stale pattern (a -1 read as observed)."""

import threading

import torch

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _net() -> BayesNet:
    return BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([[0.3, 0.7], [0.6, 0.4]], ["a"]))


def test_interleaved_calls_of_two_threads_leave_no_pattern_behind():
    bn = _net()
    cols = {"a": {"a": torch.tensor([0, 1]), "b": torch.tensor([1, 0])},
            "b": {"a": torch.tensor([1, 1]), "b": torch.tensor([0, 0])}}
    entered = {k: threading.Event() for k in cols}
    leave = {k: threading.Event() for k in cols}
    seen = {}

    def call(k):
        with bn._observed_read(cols[k], bn._observed_columns(cols[k])):
            entered[k].set()
            leave[k].wait(10)
            seen[k] = bn._observed_of(cols[k]) is not None

    threads = {k: threading.Thread(target=call, args=(k,)) for k in cols}
    threads["a"].start()
    entered["a"].wait(10)
    threads["b"].start()
    entered["b"].wait(10)
    leave["a"].set()  # A returns first, then B
    threads["a"].join(10)
    leave["b"].set()
    threads["b"].join(10)
    assert seen == {"a": True, "b": True}
    cols["a"]["b"][1] = -1  # a missing entry now, in place
    assert bn._observed_of(cols["a"])["b"][1].tolist() == [True, False]  # read afresh, not A's stale pattern
