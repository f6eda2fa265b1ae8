"""The elimination-cost yardstick of the BN benchmark, against hand counts and every elimination order."""

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from elimination_cost import elimination_entries, mixed_over_single, moral_graph  # noqa: E402

CHAIN = {"a": [], "b": ["a"], "c": ["b"]}
COLLIDER = {"a": [], "b": [], "c": ["a", "b"]}
CARDS = {"a": 2, "b": 3, "c": 4, "d": 5}


def test_the_moral_graph_marries_parents_and_drops_observed_nodes():
    assert moral_graph(COLLIDER) == {"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}}
    assert moral_graph(CHAIN) == {"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}
    assert moral_graph(CHAIN, observed=["b"]) == {"a": set(), "c": set()}


def test_an_order_costs_the_tables_of_its_maximal_cliques():
    # chain: {a, b} (2*3) and {b, c} (3*4) in either direction; the last node alone is inside them
    assert elimination_entries(CHAIN, CARDS, order=["a", "b", "c"]) == 6 + 12
    assert elimination_entries(CHAIN, CARDS, order=["c", "b", "a"]) == 6 + 12
    # fill-in: summing out b first joins a and c, one clique of the three
    assert elimination_entries(CHAIN, CARDS, order=["b", "a", "c"]) == 24
    # a collider's parents are married: one clique, the whole family
    assert elimination_entries(COLLIDER, CARDS, order=["a", "b", "c"]) == 24
    with pytest.raises(ValueError, match="every unobserved node"):
        elimination_entries(CHAIN, CARDS, order=["a", "b"])


def test_observing_a_node_indexes_it_away():
    assert elimination_entries(CHAIN, CARDS) == 18
    assert elimination_entries(CHAIN, CARDS, observed=["b"]) == 2 + 4
    assert elimination_entries(CHAIN, CARDS, observed=["a", "b", "c"]) == 0


@pytest.mark.parametrize("parents", [
    CHAIN, COLLIDER,
    {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},  # a loop: one fill-in edge is needed
    {"a": [], "b": [], "c": ["a", "b"], "d": ["c", "a"]},
    {"a": [], "b": ["a"], "c": ["b"], "d": ["c", "a"]},  # a 4-cycle after moralisation
])
def test_the_greedy_cost_is_the_best_order_on_small_networks(parents):
    costs = {elimination_entries(parents, CARDS, order=o) for o in itertools.permutations(parents)}
    assert elimination_entries(parents, CARDS) == min(costs)
    if len(parents) == 4:
        assert max(costs) > min(costs)  # a careless order costs more: the greedy choice matters


def test_mixed_rows_are_costed_by_their_own_pattern():
    seen = [[True], [False], [False], [True]]
    out = mixed_over_single(CHAIN, CARDS, ["b"], seen)
    unobserved = elimination_entries(CHAIN, CARDS)
    assert out["all_observed"] == 2 + 4
    assert out["mixed_row_mean"] == pytest.approx((2 * 6 + 2 * unobserved) / 4)
    assert out["ratio_mixed_over_single"] == pytest.approx(out["mixed_row_mean"] / 6)
