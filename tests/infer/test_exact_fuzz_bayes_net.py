"""Exact BayesNet queries (:mod:`hybridpgm.infer.exact`) on seeded random nets against brute-force enumeration.

The nets, queries and checks are :mod:`tests.infer.bn_fuzz_cases` (float64, 1e-9). Small nets are answered by
the dense joint (:mod:`hybridpgm.infer.bn_dense`) and never split by evidence pattern, so the variants lower
the size thresholds with ``monkeypatch`` to force the paths large nets take: the contraction
(``bn_dense.DENSE_MAX = 0``), the hand-written reverse pass with its workspace and kept log-tables
(``reverse_pass.LARGE = 1``), one row per chunk (``bn_contract.ROW_CHUNK_BYTES``), the log-space redo of rows
under the probability floor (floor raised to 1e-3), chunked max-sum (``contraction_steps.MAX_SUM_CHUNK_ELEMENTS``)
and row splits by evidence pattern stitched back (``exact.choose_split`` replaced by a random subset of the inner
evidence nodes). The default run checks a few dozen nets per variant; ``pytest -m slow`` runs the FUZZ audit's
case counts (session 41).
"""

from __future__ import annotations

import random

import pytest
import torch

import hybridpgm.graphs.contraction_steps as contraction_steps
import hybridpgm.graphs.reverse_pass as reverse_pass
import hybridpgm.infer.bn_contract as bn_contract
import hybridpgm.infer.bn_dense as bn_dense
import hybridpgm.infer.bn_spaces as bn_spaces
import hybridpgm.infer.exact as exact
from hybridpgm.infer.row_groups import inner_nodes
from tests.infer.bn_fuzz_cases import check_case, check_edits_case

#: the forced paths, by name; each a list of patches (module, attribute or dict key, value)
PATCHES = {
    "dense0": [(bn_dense, "DENSE_MAX", 0)],
    "dense0-large": [(bn_dense, "DENSE_MAX", 0), (reverse_pass, "LARGE", 1)],
    "dense0-chunk": [(bn_dense, "DENSE_MAX", 0), (bn_contract.ROW_CHUNK_BYTES, "cpu", 1)],
    "dense0-large-floor": [(bn_dense, "DENSE_MAX", 0), (reverse_pass, "LARGE", 1),
                           (bn_spaces.PROBABILITY_FLOOR, torch.float64, 1e-3)],
    "floor-chunksum": [(bn_spaces.PROBABILITY_FLOOR, torch.float64, 1e-3),
                       (contraction_steps, "MAX_SUM_CHUNK_ELEMENTS", 2)],
    "dense0-chunksum": [(bn_dense, "DENSE_MAX", 0), (contraction_steps, "MAX_SUM_CHUNK_ELEMENTS", 2)],
}


def patch(monkeypatch, name: str) -> None:
    for target, key, value in PATCHES[name]:
        if isinstance(target, dict):
            monkeypatch.setitem(target, key, value)
        else:
            monkeypatch.setattr(target, key, value)


def force_splits(monkeypatch, seed: int) -> list:
    """Split rows on a random 70% of the inner evidence nodes, whatever the cost model says; counts the splits."""
    rng, count = random.Random(seed), []

    def forced(bn, ev, targets, queries=(), max_groups=None):
        out = [v for v in inner_nodes(bn, ev, targets) if rng.random() < 0.7]
        count.append(bool(out))
        return out

    monkeypatch.setattr(exact, "choose_split", forced)
    return count


def assert_agrees(seed: int, neural: bool = False, grad: bool = True) -> None:
    fails = check_case(seed, neural, grad)
    assert not fails, "\n".join(fails[:5])


def count_reverse_passes(monkeypatch) -> list:
    """Counts the calls of the hand-written reverse pass (one entry per call)."""
    calls, original = [], reverse_pass.value_and_gradients

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(reverse_pass, "value_and_gradients", counted)
    return calls


@pytest.mark.parametrize("seed", range(24))
def test_matches_enumeration(seed):
    assert_agrees(seed)


@pytest.mark.parametrize("seed", range(1000, 1006))
@pytest.mark.parametrize("paths", sorted(PATCHES))
def test_matches_enumeration_on_forced_paths(monkeypatch, paths, seed):
    patch(monkeypatch, paths)
    assert_agrees(seed)


@pytest.mark.parametrize("paths", [None, "dense0", "dense0-large"])
def test_matches_enumeration_with_rows_split(monkeypatch, paths):
    """Rows split by evidence pattern and stitched back, on the dense joint, the contraction and the reverse pass."""
    if paths:
        patch(monkeypatch, paths)
    count = force_splits(monkeypatch, 0)
    for seed in range(2000, 2008):
        assert_agrees(seed)
    assert sum(count) >= 5, f"only {sum(count)} queries were split: the test no longer reaches the stitching"


@pytest.mark.parametrize("paths", ["dense0-large", "dense0-large-floor"])
@pytest.mark.parametrize("neural", [False, True], ids=["tables", "neural"])
def test_reverse_pass_matches_enumeration(monkeypatch, paths, neural):
    """Under ``no_grad`` the marginals of a contraction with an intermediate of ``LARGE`` elements come from the
    hand-written reverse pass in the network's workspace, whether the tables are parameters or buffers."""
    patch(monkeypatch, paths)
    calls = count_reverse_passes(monkeypatch)
    for seed in range(4000, 4004):
        assert_agrees(seed, neural, grad=False)
    assert len(calls) >= 4, f"the reverse pass ran {len(calls)} times: the test no longer reaches it"


@pytest.mark.parametrize("seed", range(3000, 3006))
def test_neural_cpds_match_enumeration(seed):
    """Nets whose CPDs with parents are mostly float64 ``cpd.Neural`` networks (eval mode)."""
    assert_agrees(seed, neural=True)


@pytest.mark.parametrize("seed", range(5000, 5006))
@pytest.mark.parametrize("paths", [None, "dense0-large"])
def test_cpd_edits_match_enumeration(monkeypatch, paths, seed):
    """CPDs edited between queries of the same shape (plans and kept log-tables reused): answers follow the edits;
    with ``dense0-large`` under ``no_grad``, through the reverse pass's workspace and kept log-tables."""
    if paths:
        patch(monkeypatch, paths)
    fails = check_edits_case(seed, grad=paths is None)
    assert not fails, "\n".join(fails[:5])


@pytest.mark.slow
@pytest.mark.parametrize("paths", [None, "dense0-large-floor", "split-dense0-large"])
def test_cpd_edits_match_enumeration_many(monkeypatch, paths):
    if paths and paths.startswith("split"):
        force_splits(monkeypatch, 2)
        paths = paths.removeprefix("split-")
    if paths:
        patch(monkeypatch, paths)
    fails = [f for seed in range(50_000, 50_100) for f in check_edits_case(seed, grad=paths is None)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 2000, 250))
def test_matches_enumeration_many(start):
    fails = [f for seed in range(10_000 + start, 10_000 + start + 250) for f in check_case(seed)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.slow
@pytest.mark.parametrize("paths", sorted(PATCHES) + ["split", "split-dense0", "split-dense0-large"])
def test_matches_enumeration_on_forced_paths_many(monkeypatch, paths):
    if paths.startswith("split"):
        force_splits(monkeypatch, 1)
        paths = paths.removeprefix("split").removeprefix("-")
    if paths:
        patch(monkeypatch, paths)
    grad = "large" not in paths  # under no_grad: the reverse pass, parameters or buffers
    fails = [f for seed in range(20_000, 20_250) for f in check_case(seed, grad=grad)]
    fails += [f for seed in range(30_000, 30_030) for f in check_case(seed, neural=True, grad=grad)]
    assert not fails, "\n".join(fails[:5])
