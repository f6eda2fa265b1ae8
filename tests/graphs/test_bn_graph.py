"""The DAG bookkeeping of BayesNet: the iterative topological order and the two-ended cycle search."""

import random

import pytest

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs.bn_graph import DagIndex, topological_order


def _recursive_order(nodes, parents):
    """The definition: depth-first post-order over parents, roots in ``nodes`` order (the former code)."""
    order, done = [], set()

    def visit(v):
        if v not in done:
            for p in parents[v]:
                visit(p)
            done.add(v)
            order.append(v)

    for v in nodes:
        visit(v)
    return order


@pytest.mark.parametrize("seed", range(30))
def test_order_is_the_recursive_post_order(seed):
    rng = random.Random(seed)
    n = rng.choice([1, 5, 30, 200])
    parents = {f"v{i}": rng.sample([f"v{j}" for j in range(i)], min(i, rng.randrange(5))) for i in range(n)}
    nodes = list(parents)
    rng.shuffle(nodes)
    assert topological_order(nodes, parents) == _recursive_order(nodes, parents)


def test_order_of_a_deep_chain_needs_no_recursion():
    n = 20000
    parents = {f"x{i}": [f"x{i - 1}"] if i else [] for i in range(n)}
    assert topological_order(list(parents)[::-1], parents) == list(parents)


def test_order_names_a_cycle_it_meets():
    with pytest.raises(ModelSpecError, match=r"^the network has the cycle a -> b -> c -> a$"):
        topological_order(["a", "d"], {"a": ["c"], "b": ["a"], "c": ["b"], "d": []})


def test_cycle_through_searches_from_both_ends():
    dag = DagIndex({"a": ["e"], "b": ["a"], "c": ["b"], "d": ["c"]})  # a -> b -> c -> d, a waits for e
    assert dag.declared_children("e") == ["a"] and dag.declared_children("d") == []
    assert dag.cycle_through("e", ["d"]) == ["e", "a", "b", "c", "d", "e"]
    assert dag.cycle_through("e", ["b", "zz"]) == ["e", "a", "b", "e"]
    assert dag.cycle_through("e", ["zz"]) is None and dag.cycle_through("f", ["d"]) is None
    dag.insert("e", [])
    dag.remove("e")
    dag.remove("a")  # its parent's list of children goes, its children still wait for it
    assert dag.children == {"a": ["b"], "b": ["c"], "c": ["d"]} and len(dag) == 3
    assert dag.cycle_through("a", ["d"]) == ["a", "b", "c", "d", "a"]
