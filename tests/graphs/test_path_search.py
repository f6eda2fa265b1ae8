"""The random-greedy path search draws from private streams only (:mod:`hybridpgm.graphs.path_search`).

Before, ``ContractionPlan``'s ``"auto"`` search ran ``opt_einsum.RandomGreedy``, which reseeds Python's *global*
``random`` per trial and draws from it (state saved and restored around it, under no lock): another thread's seeded
``random`` stream was moved and rewound by a first query, and two first queries at once drew from each other's
seeds and cached plans that a query alone never finds (THREADS audit, session 36: 17 of 48)."""

import random
import sys
import threading

import opt_einsum
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import load_network
from hybridpgm.graphs.path_search import RandomGreedySearch

EVIDENCE = {"HREKG": [1, 1, 0], "BP": [2, 0, 1], "PRESS": [1, 3, 2], "MINVOLSET": [2, 2, 1]}


def _first_query():
    """A fresh alarm network's first query (its plans searched: more than 12 operands), and its plans."""
    bn = load_network("alarm")
    post = bn.posterior("LVEDVOLUME", {k: torch.tensor(v) for k, v in EVIDENCE.items()})
    plans = sorted((p.opt_cost, [tuple(s[0]) for s in getattr(p, "main", p).steps])
                   for p in bn.plan_cache._plans.values())
    return post, plans


def _problems(count, seed):
    rs = random.Random(seed)
    for _ in range(count):
        n, nd = rs.randint(3, 30), rs.randint(3, 25)
        inputs = [frozenset(rs.sample(range(nd), rs.randint(1, min(4, nd)))) for _ in range(n)]
        used = sorted(set().union(*inputs))
        output = frozenset(rs.sample(used, rs.randint(0, min(2, len(used)))))
        yield inputs, output, {d: rs.randint(1, 5) for d in range(nd)}


def test_the_paths_of_opt_einsums_random_greedy():
    """Trial ``r`` on ``random.Random(r)`` makes the draws opt_einsum's trial makes after ``random.seed(r)``: the
    same best path (so the plans, and the bits of the answers, are those of before), without the global stream."""
    state = random.getstate()
    try:
        for trials, (inputs, output, sizes) in zip([1, 4, 16, 64] * 10, _problems(40, 0)):
            expected = [tuple(s) for s in opt_einsum.RandomGreedy(max_repeats=trials)(inputs, output, sizes)]
            assert RandomGreedySearch(trials)(inputs, output, sizes) == expected
    finally:
        random.setstate(state)


def test_a_search_neither_reads_nor_moves_the_global_stream(monkeypatch):
    """Another thread reseeding and drawing from ``random`` in the middle of each trial (forced here: every greedy
    run starts with ``random.seed(999)`` and a draw) changes neither the plans nor the answer, and the trials leave
    that thread's stream where it was; a query alone leaves the global state as it found it."""
    random.seed(7)
    before = random.getstate()
    reference = _first_query()
    assert random.getstate() == before
    greedy, moved = opt_einsum.paths.ssa_greedy_optimize, []

    def interleaved(*args, **kwargs):
        random.seed(999)
        random.random()  # the other thread's draw
        state = random.getstate()
        path = greedy(*args, **kwargs)
        moved.append(random.getstate() != state)
        return path

    monkeypatch.setattr(opt_einsum.paths, "ssa_greedy_optimize", interleaved)
    post, plans = _first_query()
    assert len(moved) >= 128 and not any(moved)  # every trial of the search (one plan of more than 12 operands)
    assert plans == reference[1] and torch.equal(post, reference[0])


@pytest.fixture
def fast_switching():
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_threads_first_queries_get_the_serial_plans_and_leave_a_seeded_stream_alone(fast_switching):
    """Three threads make first queries on their own networks while a fourth draws from ``random.seed(0)``'s
    stream: every plan and answer is the serial one, and the fourth thread's draws are the seeded stream's."""
    post, plans = _first_query()
    random.seed(0)
    expected = [random.random() for _ in range(20_000)]
    results, differ, done = [], [], threading.Event()

    def user():  # the seeded stream, again and again while the queries run
        while not done.is_set():
            random.seed(0)
            differ.append(sum(random.random() != x for x in expected))

    def queries():
        results.extend(_first_query() for _ in range(2))

    workers = [threading.Thread(target=queries) for _ in range(3)]
    drawer = threading.Thread(target=user)
    for t in [drawer, *workers]:
        t.start()
    for t in workers:
        t.join()
    done.set()
    drawer.join()
    assert len(results) == 6 and len(differ) > 1
    assert all(p == plans and torch.equal(x, post) for x, p in results)
    assert not any(differ)


@pytest.mark.parametrize("kwargs", [{"trials": 0}, {"nbranch": 0}, {"temperature": 0.0}])
def test_a_search_of_no_trial_is_refused(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        RandomGreedySearch(**kwargs)
