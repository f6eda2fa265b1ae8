"""``MarkovNet.sample(generator=...)`` whatever the neural potentials' modes (found by an audit of the samplers:
the global streams were seeded from the generator only while some potential was in training mode)."""

import torch
import torch.nn.functional as F
from torch.func import vmap

from hybridpgm.graphs import MarkovNet
from hybridpgm.infer.mrf_exact import exact_sample
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


def _table_mrf():
    mrf = MarkovNet({"a": 2, "b": 3})
    return mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))


def test_a_table_markov_net_draws_as_exact_sample_with_the_same_generator():
    """Review: no network, so nothing draws from torch's global streams and no draw of the generator goes to a seed
    (the scope seeded anyway, and the samples differed from ``exact_sample``'s with the same generator)."""
    mrf = _table_mrf()
    got = mrf.sample(300, method="exact", generator=torch.Generator().manual_seed(1))
    expected = exact_sample(mrf.factor_graph(None, None), 300, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.stack([got[v] for v in mrf.variables], -1), expected.reshape(300, 2))


def test_a_table_markov_net_samples_by_gibbs_with_a_generator_under_vmap():
    """Review: the seed draw, read on the host, failed under vmap with a message about evidence."""
    mrf, g = _table_mrf(), torch.Generator().manual_seed(1)
    out = vmap(lambda x: x * 0 + mrf.sample(8, num_sweeps=3, generator=g)["b"], randomness="different")(
        torch.arange(3))
    assert out.shape == (3, 8)
