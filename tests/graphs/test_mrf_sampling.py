"""``MarkovNet.sample(generator=...)`` whatever the neural potentials' modes (found by an audit of the samplers:
the global streams were seeded from the generator only while some potential was in training mode)."""

import torch
import torch.nn.functional as F

from hybridpgm.graphs import MarkovNet
from tests import generator_contract as contract


class _Potential(torch.nn.Module):
    def __init__(self, always_dropout: bool):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))
        self.always_dropout = always_dropout

    def forward(self, context=None):
        return F.dropout(self.table, 0.5, training=True) if self.always_dropout else self.table


def _net(always_dropout=False):
    g = torch.Generator().manual_seed(1)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=g))
    return mrf.add_factor("bc", ["b", "c"], _Potential(always_dropout))


def _sample(mrf, method):
    return mrf.sample(50, method=method, generator=torch.Generator().manual_seed(42))


def test_the_same_generator_gives_the_same_samples_in_training_and_evaluation_mode():
    """A potential that does not depend on its mode.  Before, the generator gave one seed draw while the potential
    was in training mode and none in evaluation mode, so every draw after it differed."""
    mrf = _net()
    for method in ("exact", "gibbs"):
        trained = _sample(mrf.train(), method)
        evaluated = _sample(mrf.eval(), method)
        assert all(torch.equal(trained[v], evaluated[v]) for v in "abc")


def test_a_potential_that_draws_in_evaluation_mode_draws_from_the_generator():
    """Before, in evaluation mode its dropout followed torch's global seed and moved the caller's stream."""
    mrf = _net(always_dropout=True).eval()
    call = lambda **kw: list(mrf.sample(50, method="exact", **kw).values())  # noqa: E731 - the contract's call
    contract.assert_repeatable(call)
    contract.assert_seeds_differ(call)
    contract.assert_callers_streams_untouched(call)
