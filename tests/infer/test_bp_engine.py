"""The flat BP engine's index structures (the algorithm itself: tests/infer/test_belief_propagation.py)."""

import torch

from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer.bp_engine import BinaryPairwise, FlatGraph, _structure


def _dense_gather_sum(variables, d):
    """For each edge s (to variable edge_var[s]), the sum of d over the edges into the factor's
    other variable, except the factor's own message to it: a plain double loop."""
    F = variables.shape[0]
    edge_var = variables.t().reshape(-1)
    other = variables.flip(1).t().reshape(-1)
    out = torch.zeros_like(d)
    for s in range(2 * F):
        for t in range(2 * F):
            if edge_var[t] == other[s] and t != (s + F) % (2 * F):
                out[s] += d[t]
    return out


def test_gather_sum_pattern_matches_double_loop_on_irregular_graph():
    # a star plus a triangle plus an isolated edge: degrees 1..4
    scopes = [[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 5], [5, 1], [6, 7]]
    mrf = MarkovNet({f"v{i}": 2 for i in range(8)})
    mrf.add_factors("pair", [[f"v{a}", f"v{b}"] for a, b in scopes], torch.randn(len(scopes), 2, 2,
                                                                                 dtype=torch.double))
    fg = mrf.factor_graph()
    assert BinaryPairwise.applies(fg)
    eng = BinaryPairwise(fg)
    d = torch.randn(2 * len(scopes), 3, dtype=torch.double)
    assert torch.allclose(eng._gather_sum(d), _dense_gather_sum(fg.groups[0].variables, d))


def test_structure_cache_follows_identity_and_in_place_changes():
    variables = torch.tensor([[0, 1], [1, 2]])
    a = _structure(variables, 3)
    assert _structure(variables, 3) is a
    assert _structure(variables.clone(), 3) is not a
    variables[1, 1] = 0  # bumps the version counter: a stale pattern must not be reused
    b = _structure(variables, 3)
    assert b is not a and b[0].tolist() == [0, 1, 1, 0]


def test_flat_graph_edges_and_to_flat_layout():
    g = torch.Generator().manual_seed(0)
    fg = ising_grid(2, 3, torch.randn(2, 7, generator=g, dtype=torch.double),
                    torch.randn(2, 6, generator=g, dtype=torch.double)).factor_graph()
    flat = FlatGraph(fg)
    assert flat.edge_var.tolist() == fg.groups[0].variables.reshape(-1).tolist()
    eng = BinaryPairwise(fg)
    d = torch.randn(14, 2, generator=g, dtype=torch.double)
    m = eng.to_flat(d - eng.c0)  # [B, E, 2] normalised log messages, factor-major
    assert torch.allclose(m.exp().sum(-1), torch.ones(2, 14, dtype=torch.double))
    # the message of factor f to its argument j is d[j * F + f] in log-odds
    F = 7
    for f in range(F):
        for j in range(2):
            assert torch.allclose(m[:, 2 * f + j, 1] - m[:, 2 * f + j, 0], d[j * F + f])


def test_padded_pattern_lists_each_csr_row_in_order():
    g = torch.Generator().manual_seed(1)
    fg = ising_grid(3, 4, torch.randn(17, generator=g), torch.randn(12, generator=g)).factor_graph()
    _, _, cols, offsets, pad = _structure(fg.groups[0].variables, fg.num_vars)
    E = offsets.numel() - 1
    W = pad.numel() // E
    table = pad.view(W, E)
    for s in range(E):
        row = cols[offsets[s]:offsets[s + 1]].tolist()
        assert table[:, s].tolist() == row + [E] * (W - len(row))  # E: the zero slot


def test_no_padded_pattern_where_padding_would_waste():
    # a hub with ten leaves: messages into the leaves see 9 others, messages into the hub none
    mrf = MarkovNet({f"v{i}": 2 for i in range(11)})
    mrf.add_factors("star", [["v0", f"v{i}"] for i in range(1, 11)], torch.randn(10, 2, 2))
    fg = mrf.factor_graph()
    _, _, cols, offsets, pad = _structure(fg.groups[0].variables, fg.num_vars)
    assert cols.numel() == 90 and pad.numel() == 0
