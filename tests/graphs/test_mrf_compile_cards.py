"""The cardinalities of a compiled MarkovNet (hybridpgm/graphs/mrf_compile.py ``_card_tensor``): made from the
host list once per network and device -- on CUDA each ``torch.tensor(list, device=...)`` is a blocking upload --
not at every ``factor_graph()``; kept correct when the net or the kept tensor changes."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from hybridpgm.graphs import MarkovNet


class _Uploads(TorchFunctionMode):
    """Counts ``torch.tensor`` calls: host data made into a tensor (on CUDA, a copy to the device)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.tensor:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _net() -> MarkovNet:
    mrf = MarkovNet({"a": 2, "b": 3, "c": 4})
    return mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))


def test_a_repeated_compile_makes_no_tensor_from_host_data():
    """Fails on the old code: one ``torch.tensor`` of the cardinalities per compile."""
    mrf = _net()
    mrf.factor_graph()
    with _Uploads() as uploads:
        again = mrf.factor_graph()
    assert uploads.count == 0
    assert again.cardinalities.tolist() == [2, 3, 4] and again.cardinalities.dtype == torch.long


def test_each_graph_has_its_own_cardinalities_and_the_kept_ones_follow_the_network():
    """Each compile hands out its own copy of the kept tensor (review: a shared one let an edit of one graph's
    cardinalities change every graph compiled before); a factor added after a compile keeps the kept tensor (the
    variables are the same); a net of other variables has its own; one kept in inference mode serves outside it."""
    mrf = _net()
    first, second = mrf.factor_graph(), mrf.factor_graph()
    assert first.cardinalities is not second.cardinalities
    second.cardinalities[1] = 7  # a caller's edit of one compiled graph
    assert first.cardinalities.tolist() == [2, 3, 4] and mrf.factor_graph().cardinalities.tolist() == [2, 3, 4]
    kept = mrf._card_tensor[1]
    mrf.add_factor("bc", ["b", "c"], torch.zeros(3, 4))
    fresh = mrf.factor_graph()
    assert mrf._card_tensor[1] is kept and torch.equal(fresh.valid[0].sum(-1), torch.tensor([2, 3, 4]))
    other = MarkovNet({"a": 5, "b": 2}).add_factor("ab", ["a", "b"], torch.zeros(5, 2))
    assert other.factor_graph().cardinalities.tolist() == [5, 2] and other.factor_graph().num_states == 5
    net = _net()
    with torch.inference_mode():  # kept from a compile in inference mode, it still serves one outside it
        net.factor_graph()
    assert not net.factor_graph().cardinalities.is_inference()
