"""The flat BP engine's index structures (the algorithm itself: tests/infer/test_belief_propagation.py)."""

import gc
import weakref

import pytest
import torch

from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer import bp_engine
from hybridpgm.infer.bp_engine import BinaryPairwise, FlatGraph, _structure
from hybridpgm.infer.structure_cache import StructureCache


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


def _two_pairwise_families():
    """Binary variables, two pairwise families: compiled to one group whose ``variables`` is a concatenation."""
    g = torch.Generator().manual_seed(0)
    net = MarkovNet({v: 2 for v in "abcd"})
    net.add_factors("ring", [["a", "b"], ["b", "c"], ["c", "d"]], torch.randn(3, 2, 2, generator=g, dtype=torch.double))
    return net.add_factor("chord", ["d", "a"], torch.randn(2, 2, generator=g, dtype=torch.double))


@pytest.mark.parametrize("make", [lambda: ising_grid(4, 4, coupling=0.3), _two_pairwise_families],
                         ids=["one family", "two families"])
def test_bp_queries_on_one_net_share_one_structure_which_goes_with_the_net(make, monkeypatch):
    """Before, every compile built a new ``variables`` tensor (``torch.cat``), so each BP query missed the cache and
    added an entry (8 of them, 97 MiB for a 200x200 grid), and the cache held those tensors after the net was
    deleted."""
    monkeypatch.setattr(bp_engine, "_STRUCTURES", StructureCache(max_entries=8))
    net = make()
    assert BinaryPairwise.applies(net.factor_graph())
    first = net.marginals("bp", num_iters=5)
    for _ in range(2):
        again = net.marginals("bp", num_iters=5)
        assert all(torch.equal(again[v], first[v]) for v in first)
    assert len(bp_engine._STRUCTURES) <= 1
    bp_engine._STRUCTURES.clear()  # a structure built afresh gives the same answers
    fresh = net.marginals("bp", num_iters=5)
    assert all(torch.equal(fresh[v], first[v]) for v in first)
    refs = [weakref.ref(net)] + [weakref.ref(t) for t in net.buffers()]
    del net, first, again, fresh
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert len(bp_engine._STRUCTURES) == 0  # no tensor of the net is held


def test_the_structure_cache_holds_no_reference_to_its_keys():
    """Only weak references: a structure of one factor (whose ``edge_var`` would be a view) does not keep its
    ``variables`` alive, and the cache stays bounded."""
    variables = torch.tensor([[0, 1]])
    out = _structure(variables, 2)
    assert all(t._base is not variables for t in out)
    ref = weakref.ref(variables)
    del variables
    gc.collect()
    assert ref() is None
    most = bp_engine._STRUCTURES.max_entries
    kept = [torch.tensor([[0, 1], [1, i]]) for i in range(2, 2 + 2 * most)]
    for variables in kept:
        _structure(variables, 2 + 2 * most)
    assert len(bp_engine._STRUCTURES) == most
