"""Tables less their maxima (hybridpgm.graphs.mrf_centring): which entries the maximum is over, the offsets, the
gradient."""

import torch

from hybridpgm.graphs import MarkovNet
from hybridpgm.graphs.mrf_centring import centred, centred_graph, group_states
from hybridpgm.infer.mrf_exact import exact_log_partition


def test_the_maximum_is_over_finite_entries_and_zero_where_none_is():
    t = torch.tensor([[[1.5, float("inf")], [-2.0, float("nan")]],
                      [[float("-inf"), float("-inf")], [float("-inf"), float("-inf")]]])
    c, m = centred(t, 2)
    assert torch.equal(m, torch.tensor([1.5, 0.0]))
    assert torch.equal(c[1], t[1]) and c[0, 0, 0] == 0 and c[0, 1, 0] == -3.5 and c[0, 0, 1] == float("inf")


def test_a_half_precision_table_straddling_zero_keeps_its_entries():
    """Guard (passes before and after): half-precision tables are centred only where their entries share a sign
    (tests/graphs/test_mrf_centring_half.py); one whose entries straddle 0 keeps them, bit for bit, and m is 0."""
    t = torch.tensor([[300.0, -1.0]], dtype=torch.bfloat16)
    c, m = centred(t, 1)
    assert c.dtype == t.dtype and torch.equal(c, t) and torch.equal(m, torch.zeros(1, dtype=torch.bfloat16))


def test_the_centred_graph_moves_log_z_by_the_offsets_over_the_states_not_the_padding():
    """Variables of 2 and 3 states (padded to 3, a padding entry 0) with every entry near -1000: each maximum is
    over the states, so every centred table's maximum there is 0 (a padding entry moves to about +1000, never
    read) and log Z = log Z̃ + M (float64, to rounding); the
    gradient of log Z̃ is the one of log Z (the offsets are constants)."""
    g = torch.Generator().manual_seed(4)
    ab = torch.nn.Parameter(torch.randn(2, 3, generator=g, dtype=torch.float64) - 1000)
    m = (MarkovNet({"a": 2, "b": 3, "c": 2}).add_factor("ab", ["a", "b"], ab)
         .add_factor("bc", ["b", "c"], torch.randn(3, 2, generator=g, dtype=torch.float64) - 1000)
         .add_factor("a", ["a"], torch.randn(2, generator=g, dtype=torch.float64) - 1000))
    fg = m.factor_graph()
    fc, offset = centred_graph(fg)
    states = fg.valid[0]  # no evidence: the variables' states
    assert float(fc.unary[0][states].reshape(-1).max()) <= 0 and float(offset) < -2900
    for g_c, g_0 in zip(fc.groups, fg.groups):
        on_states = g_c.log_potentials.masked_fill(~group_states(fg, g_c.variables), float("-inf"))
        assert torch.equal(on_states.amax((2, 3)), torch.zeros(1, 2, dtype=torch.float64))
        assert torch.equal(g_0.variables, g_c.variables)
    log_z, log_zc = exact_log_partition(fg), exact_log_partition(fc)
    assert torch.allclose(log_zc + offset, log_z, atol=1e-10, rtol=0)
    assert torch.allclose(torch.autograd.grad(log_zc.sum(), ab)[0], torch.autograd.grad(log_z.sum(), ab)[0],
                          atol=1e-12, rtol=0)
