"""MarkovNet.sample with a generator (hybridpgm/graphs/mrf_sampling.py): repeatable under dropout, the global
stream left alone, and in eval mode the draws of exact_sample."""

import pytest
import torch
from torch import nn

from hybridpgm.graphs import MarkovNet


def _dropout_mrf():
    torch.manual_seed(0)
    m = MarkovNet({"x": 2, "y": 2})
    m.add_factor("xy", ["x", "y"], nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4),
                                                 nn.Unflatten(-1, (2, 2))))
    return m, torch.randn(3)


@pytest.mark.parametrize("method", ["exact", "gibbs"])
def test_sample_with_a_generator_repeats_under_dropout_and_keeps_the_global_stream(method):
    # found by an audit: a neural potential's dropout drew from torch's global stream, so sample(generator=g) was
    # not a function of g and moved the caller's stream
    m, ctx = _dropout_mrf()
    m.train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    s1 = m.sample(300, method=method, context=ctx, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    s2 = m.sample(300, method=method, context=ctx, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(s1[v], s2[v]) for v in m.variables)


def test_sample_with_a_generator_in_eval_mode_draws_as_exact_sample():
    # one draw of the generator seeds the potentials' streams (in eval mode too: the same draws as in training
    # mode for potentials that do not depend on it), then the samples are exact_sample's from the generator
    from hybridpgm.infer.mrf_exact import exact_sample

    m, ctx = _dropout_mrf()
    m.eval()
    g, reference = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.randint(2**62, (), generator=reference)
    got = m.sample(300, method="exact", context=ctx, generator=g)
    expected = exact_sample(m.factor_graph(None, ctx), 300, generator=reference)
    assert torch.equal(torch.stack([got[v] for v in m.variables], -1), expected.reshape(300, 2))
    assert torch.equal(g.get_state(), reference.get_state())
