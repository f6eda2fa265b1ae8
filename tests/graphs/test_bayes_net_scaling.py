"""BayesNet declaration at scale: deep networks declared child-first, the per-``add`` cost, cycle detection.

The cost of :meth:`BayesNet.add` is measured by what it reads (which CPDs' ``parents``), never by the clock.
"""

import copy
import pickle
import random
import re

import pytest
import torch

import hybridpgm
from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.graphs.bif import read_bif, write_bif
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

_READS: list = []  # the CPDs whose parents were read, one entry per read


class _CountingTable(cpd.Table):
    """A :class:`~hybridpgm.graphs.cpd.Table` that records each read of its ``parents``."""

    @property
    def parents(self):
        _READS.append(self)
        return self.__dict__["_counted_parents"]

    @parents.setter
    def parents(self, value):
        self.__dict__["_counted_parents"] = value


def _table(parents, cls=cpd.Table):
    return cls(torch.full((2,) * len(parents) + (2,), 0.5, dtype=torch.float64), list(parents))


def _chain_child_first(n: int) -> BayesNet:
    bn = BayesNet()
    for i in reversed(range(n)):
        bn.add(f"x{i}", _table([f"x{i - 1}"] if i else []))
    return bn


def test_deep_chain_declared_child_first_checks_and_round_trips_through_bif(tmp_path):
    """A 3000-node chain declared child-first (parents after children, as the docs allow) is checked, written
    and read back; the recursive order search of old raised a raw RecursionError (depth = chain length)."""
    n = 3000
    bn = _chain_child_first(n)
    assert bn.nodes[0] == f"x{n - 1}"
    assert bn.check().topological_order == [f"x{i}" for i in range(n)]
    write_bif(bn, tmp_path / "chain.bif")  # the variables and probability blocks are listed child-first
    back = read_bif(tmp_path / "chain.bif")
    assert back.nodes == bn.nodes and back.topological_order == bn.topological_order
    assert back.parents("x1") == ("x0",) and back.child_nodes(f"x{n - 2}") == [f"x{n - 1}"]


def _other_reads_per_add(order, parents) -> list[int]:
    """For each ``add`` of the nodes in ``order``: how many CPDs other than the new one had ``parents`` read."""
    bn, counts = BayesNet(), []
    for v in order:
        c = _table(parents[v], _CountingTable)
        _READS.clear()
        bn.add(v, c)
        counts.append(len({id(r) for r in _READS if r is not c}))
    bn.check()
    return counts


@pytest.mark.parametrize("child_first", [False, True])
def test_add_reads_a_bounded_number_of_cpds_on_a_chain(child_first):
    """Each ``add`` of a 400-node chain reads the parents of at most one other CPD (the child it completes,
    declared child-first); the old whole-graph cycle search read every declared CPD's parents on each add, so
    building a network was quadratic."""
    n = 400
    parents = {f"x{i}": [f"x{i - 1}"] if i else [] for i in range(n)}
    order = list(parents)[::-1] if child_first else list(parents)
    counts = _other_reads_per_add(order, parents)
    assert max(counts) <= 1, counts[-5:]


def test_add_reads_no_other_cpd_on_a_random_network_declared_parent_first():
    rng = random.Random(3)
    parents = {f"x{i}": rng.sample([f"x{j}" for j in range(i)], min(i, rng.randrange(4))) for i in range(300)}
    assert max(_other_reads_per_add(list(parents), parents)) == 0


def _has_cycle(nodes, edges) -> bool:
    """Brute force: a graph on ``k`` nodes has a cycle iff it has a walk of ``k`` edges (pigeonhole)."""
    idx = {v: i for i, v in enumerate(nodes)}
    adj = torch.zeros(len(nodes), len(nodes), dtype=torch.int64)
    for p, v in edges:
        adj[idx[p], idx[v]] = 1
    walks = torch.eye(len(nodes), dtype=torch.int64)
    for _ in range(len(nodes)):
        walks = (walks @ adj).clamp(max=1)
    return bool(walks.any())


def _declared_edges(parents, declared):
    return [(p, v) for v in declared for p in parents[v] if p in declared]


@pytest.mark.parametrize("seed", range(40))
def test_add_refuses_exactly_the_declarations_that_close_a_cycle(seed):
    """Guard (passes on the former whole-graph search too): random graphs (cycles allowed) declared in a random
    order, some parents after their children: ``add`` refuses a node iff the declared graph with it has a cycle
    (brute force), names a real cycle through the node (``u -> ... -> u`` along parent -> child edges) and
    leaves the network as it was."""
    rng = random.Random(seed)
    m = rng.randrange(3, 11)
    names = [f"v{i}" for i in range(m)]
    parents = {v: rng.sample([u for u in names if u != v], rng.randrange(0, min(3, m - 1) + 1)) for v in names}
    order = names[:]
    rng.shuffle(order)
    bn, declared, refused = BayesNet(), [], 0
    for v in order:
        cyclic = _has_cycle(declared + [v], _declared_edges(parents, declared + [v]))
        before = (bn.nodes, bn.edges)
        try:
            bn.add(v, _table(parents[v]))
        except ModelSpecError as e:
            refused += 1
            assert cyclic, str(e)
            m_ = re.fullmatch(rf"adding node '{v}' creates the cycle (.*)", str(e))
            assert m_, str(e)
            cycle = m_.group(1).split(" -> ")
            assert cycle[0] == cycle[-1] and v in cycle and len(set(cycle[:-1])) == len(cycle) - 1, cycle
            edges = set(_declared_edges(parents, declared + [v]))
            assert all((a, b) in edges for a, b in zip(cycle, cycle[1:])), (cycle, edges)
            assert (bn.nodes, bn.edges) == before
        else:
            assert not cyclic, (v, parents, declared)
            declared.append(v)
    assert bn.nodes == declared
    if all(p in declared for v in declared for p in parents[v]):  # complete: check() orders it
        order_ = bn.topological_order
        assert sorted(order_) == sorted(declared)
        assert all(order_.index(p) < order_.index(v) for p, v in bn.edges)


def _waiting_chain() -> BayesNet:
    """``a -> b -> c -> d`` with ``a`` waiting for its parent ``e``, not declared yet."""
    return BayesNet().add("a", _table(["e"])).add("b", _table(["a"])).add("c", _table(["b"])).add(
        "d", _table(["c"]))


def _assert_refused(bn, name, parents, cycle):
    """``bn.add(name, ...)`` is refused naming ``cycle`` (``[name, ...]``, along parent -> child edges) from
    any of its nodes on, and changes nothing."""
    before = (bn.nodes, bn.edges)
    with pytest.raises(ModelSpecError, match=rf"^adding node '{name}' creates the cycle ") as info:
        bn.add(name, _table(parents))
    named = str(info.value).split(" creates the cycle ")[1].split(" -> ")
    k = cycle.index(named[0])
    assert named == cycle[k:] + cycle[:k] + [named[0]], named
    assert (bn.nodes, bn.edges) == before


def _refuses_then_accepts_e(bn):
    _assert_refused(bn, "e", ["d"], ["e", "a", "b", "c", "d"])
    assert bn.add("e", _table([])).topological_order == ["e", "a", "b", "c", "d"]


def test_cycle_search_survives_copies_and_pickles():
    """Guard of the children index (passes on the former whole-graph search, which kept none): ``a`` waits
    for ``e``; the index survives deepcopy and pickling, is not shared between copies, and is rebuilt for a
    network pickled by a version without it."""
    bn = _waiting_chain()
    copies = [copy.deepcopy(bn), pickle.loads(pickle.dumps(bn)), pickle.loads(pickle.dumps(bn))]
    copies[-1].__dict__.pop("_dag", None)  # as pickled before the index existed
    for other in copies:
        _refuses_then_accepts_e(other)
    _refuses_then_accepts_e(bn)  # the copies' additions left the original's index alone


def test_declaration_after_save_and_load(tmp_path):
    """Guard (passes on the former code too): a network read back by hybridpgm.load keeps declaring: a child
    declared before its parent is bound when the parent comes, and a cycle through new nodes is refused."""
    bn = BayesNet().add("a", _table([])).add("b", _table(["a"]))
    hybridpgm.save(bn, tmp_path / "bn.pt")
    back = hybridpgm.load(tmp_path / "bn.pt")
    back.add("y", _table(["z"]))
    _assert_refused(back, "z", ["b", "y"], ["z", "y"])
    back.add("z", _table(["b"]))
    assert back.topological_order == ["a", "b", "z", "y"] and back.cpds["y"].parent_cards == {"z": 2}


def test_read_bif_looks_up_each_entrys_parent_states_without_searching_the_state_lists(tmp_path):
    """Found by a scaling audit: each entry ``(s_i) p, q;`` of a probability block was located with
    ``list.index`` over the parent's states, so a table of k entries cost O(k^2) (64k entries: 37 s).  The
    lookups are counted, not timed: no ``list.index`` call at all, and the table is read right."""
    import cProfile
    import pstats

    k = 3000
    states = ", ".join(f"s{i}" for i in range(k))
    entries = "\n".join(f"  (s{i}) {0.25 if i % 2 else 0.75}, {0.75 if i % 2 else 0.25};" for i in range(k))
    path = tmp_path / "wide.bif"
    path.write_text(f"network n {{ }}\nvariable A {{ type discrete [ {k} ] {{ {states} }}; }}\n"
                    f"variable B {{ type discrete [ 2 ] {{ no, yes }}; }}\n"
                    f"probability ( A ) {{ table {', '.join([repr(1 / k)] * k)}; }}\n"
                    f"probability ( B | A ) {{\n{entries}\n}}\n")
    profile = cProfile.Profile()
    profile.enable()
    bn = read_bif(path)
    profile.disable()
    index_calls = sum(stat[1] for key, stat in pstats.Stats(profile).stats.items()
                      if key[2] == "<method 'index' of 'list' objects>")
    assert index_calls == 0
    table = bn.cpds["B"].probs  # stored as logits: the probabilities come back to float64 rounding
    torch.testing.assert_close(table[0], torch.tensor([0.75, 0.25], dtype=torch.float64), rtol=1e-14, atol=0)
    torch.testing.assert_close(table[k - 1], torch.tensor([0.25, 0.75], dtype=torch.float64), rtol=1e-14, atol=0)
