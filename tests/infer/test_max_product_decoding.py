"""Max-product BP decoded a layer at a time: a most probable assignment on trees even where max-marginals tie."""

import itertools
import warnings

import pytest
import torch

from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.infer.belief_propagation import BeliefPropagation
from hybridpgm.infer.max_product_decoding import decode_in_layers, layers


def _brute_max(mrf: MarkovNet, evidence=None) -> float:
    """The largest score over every assignment that agrees with ``evidence`` (one model, no batch)."""
    names = list(mrf.cards)
    best = float("-inf")
    for states in itertools.product(*(range(c) for c in mrf.cards.values())):
        x = dict(zip(names, states))
        if evidence and any(x[v] != s for v, s in evidence.items()):
            continue
        best = max(best, float(mrf.score({v: torch.tensor(s) for v, s in x.items()})))
    return best


def _score(mrf: MarkovNet, assignment: dict) -> float:
    return float(mrf.score(assignment))


def _symmetric_tree(seed: int, arity3: bool) -> MarkovNet:
    """A random tree whose factors are symmetric under swapping states, without fields: every max-marginal ties,
    and most pairs of per-variable argmaxes disagree with the factor between them."""
    g = torch.Generator().manual_seed(seed)
    cards = {f"v{i}": int(torch.randint(2, 4, (), generator=g)) for i in range(7)}
    mrf = MarkovNet(cards)
    names = list(cards)
    i = 1
    while i < len(names):
        parent = names[int(torch.randint(0, i, (), generator=g))]
        if arity3 and i + 1 < len(names) and bool(torch.rand((), generator=g) < 0.5):
            scope = [parent, names[i], names[i + 1]]
            i += 2
        else:
            scope = [parent, names[i]]
            i += 1
        shape = [cards[v] for v in scope]
        # reward states that differ (a permutation-symmetric table) plus a random symmetric part
        idx = torch.stack(torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij"))
        differ = sum((idx[a] != idx[b]).double() for a in range(len(scope)) for b in range(a + 1, len(scope)))
        mrf.add_factor(f"f{i}", scope, 1.5 * differ)
    return mrf


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("arity3", [False, True])
def test_map_by_bp_is_a_most_probable_assignment_on_trees_with_ties(seed, arity3):
    """Before, each variable took the argmax of its own (tied) max-marginal: state 0 everywhere, which scores
    below the MAP on every such tree."""
    mrf = _symmetric_tree(seed, arity3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = mrf.map_assignment(method="bp")
    assert _score(mrf, got) == pytest.approx(_brute_max(mrf), abs=1e-9)


def test_map_by_bp_with_ties_under_evidence_and_a_batch():
    """Rows of a batch decoded together, evidence holding a variable of each row (its indicator replaces its
    messages), each row against its own brute-force maximum."""
    mrf = _symmetric_tree(3, True)
    names = list(mrf.cards)
    ev_values = torch.tensor([0, 1, -1])
    got = mrf.map_assignment(method="bp", evidence={names[2]: ev_values})
    for r, value in enumerate(ev_values.tolist()):
        row = {v: x[r] for v, x in got.items()}
        if value >= 0:
            assert int(row[names[2]]) == value
        expected = _brute_max(mrf, {names[2]: value} if value >= 0 else None)
        assert _score(mrf, row) == pytest.approx(expected, abs=1e-9)


def test_pair_rewarded_for_differing_decodes_to_a_map_without_a_warning():
    """The audit's case: both max-marginals tie, and each argmax took state 0 (score 0; the MAP scores 1)."""
    tied = MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tied.map_assignment(method="bp")
    assert int(got["a"]) != int(got["b"])


def test_without_ties_the_decoding_is_each_variables_argmax():
    """On a tree without ties both decodings are the MAP, so map_assignment keeps the cheaper argmax and the
    decoded assignment agrees with it."""
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2, "d": 3})
    for name, scope in [("ab", ["a", "b"]), ("bc", ["b", "c"]), ("bd", ["b", "d"])]:
        mrf.add_factor(name, scope, torch.randn([mrf.cards[v] for v in scope], generator=g, dtype=torch.float64))
    result = BeliefPropagation(max_product=True)(mrf.factor_graph())
    assert torch.equal(result.decoded_assignment, result.assignment)
    got = mrf.map_assignment(method="bp")
    assert _score(mrf, got) == pytest.approx(_brute_max(mrf), abs=1e-9)


@pytest.mark.parametrize("size", [3, 4])
def test_antiferromagnetic_grid_without_field_decodes_to_the_checkerboard(size):
    """A loopy binary grid (the fast path's messages) where every max-marginal ties: per-variable argmax gives
    all zeros, the worst assignment; the layers give a checkerboard, the exact MAP."""
    mrf = ising_grid(size, size, coupling=-1.0)
    got = mrf.map_assignment(method="bp")
    exact = mrf.map_assignment(method="exact")
    assert _score(mrf, got) == pytest.approx(_score(mrf, exact), abs=1e-9)
    plain = BeliefPropagation(max_product=True)(mrf.factor_graph()).assignment
    assert _score(mrf, {v: plain[0, i] for i, v in enumerate(mrf.cards)}) < _score(mrf, exact)


def test_layers_keep_neighbours_apart_and_follow_the_grid_diagonals():
    fg = ising_grid(4, 5, coupling=0.3).factor_graph()
    layer = layers(fg)
    for g in fg.groups:
        for scope in g.variables.tolist():
            assert len({layer[u] for u in scope}) == len(scope)
    assert layer == [r + c for r in range(4) for c in range(5)]


def test_a_variable_in_no_factor_takes_its_own_best_state():
    mrf = MarkovNet({"a": 2, "b": 2, "lone": 3}).add_factor("ab", ["a", "b"], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    mrf.add_factor("u", ["lone"], torch.tensor([0.0, 2.0, 1.0]))
    fg = mrf.factor_graph()
    result = BeliefPropagation(max_product=True)(fg)
    x = result.decoded_assignment
    assert int(x[0, 2]) == 1 and int(x[0, 0]) != int(x[0, 1])
    assert torch.equal(decode_in_layers(fg, torch.zeros(1, 2, fg.num_states, dtype=fg.unary.dtype))[0, 2],
                       torch.tensor(1))


def test_sum_product_results_have_no_decoding():
    fg = ising_grid(2, 2, coupling=0.3).factor_graph()
    assert BeliefPropagation()(fg).decoded_assignment is None


def test_only_the_rows_that_tie_are_decoded_in_layers():
    """A batch of a symmetric and an asymmetric model (a field on one variable): the first row is decoded in
    layers, the second keeps its per-variable argmax."""
    mrf = ising_grid(3, 3, coupling=-1.0, field=torch.tensor([[0.0] * 9, [0.3] + [0.0] * 8]))
    got = mrf.map_assignment(method="bp")
    plain = BeliefPropagation(max_product=True)(mrf.factor_graph()).assignment
    x = torch.stack([got[v] for v in mrf.cards], -1)
    assert torch.equal(x[1], plain[1])
    scores, exact = mrf.score(got), mrf.score(mrf.map_assignment(method="exact"))
    assert float(scores[0]) == pytest.approx(float(exact[0]), abs=1e-9)
