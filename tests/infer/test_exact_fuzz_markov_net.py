"""Exact MarkovNet queries (:mod:`hybridpgm.infer.mrf_exact`, and BP/mean-field where exact on trees or a
bound) on seeded random nets against brute-force enumeration.

The nets and checks are :mod:`tests.infer.mrf_fuzz_cases` (float64, 1e-9). The variants lower, with
``monkeypatch``, the probability floor (rows redone in log space; the MarkovNet reads the BayesNet's floor
dict), the chunk size of max-sum and log-sum (``contraction_steps.MAX_SUM_CHUNK_ELEMENTS = 2``) and the dense
threshold. ``pytest -m slow`` runs the FUZZ audit's case counts (session 41).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import hybridpgm.graphs.contraction_steps as contraction_steps
import hybridpgm.infer.bn_dense as bn_dense
import hybridpgm.infer.bn_spaces as bn_spaces
from tests.infer.mrf_fuzz_cases import check_batched_case, check_case


def patch(monkeypatch, dense0: bool) -> None:
    monkeypatch.setitem(bn_spaces.PROBABILITY_FLOOR, torch.float64, 1e-3)
    monkeypatch.setattr(contraction_steps, "MAX_SUM_CHUNK_ELEMENTS", 2)
    if dense0:
        monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)


def assert_agrees(check, seeds) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BP's and mean field's convergence warnings at num_iters
        fails = [f for seed in seeds for f in check(seed)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.parametrize("seed", range(20))
def test_matches_enumeration(seed):
    assert_agrees(check_case, [seed])


@pytest.mark.parametrize("seed", range(1000, 1016))
def test_batched_families_match_enumeration(seed):
    assert_agrees(check_batched_case, [seed])


@pytest.mark.parametrize("seed", range(2000, 2006))
@pytest.mark.parametrize("dense0", [False, True], ids=["floor-chunksum", "floor-dense0-chunksum"])
def test_matches_enumeration_on_forced_paths(monkeypatch, dense0, seed):
    patch(monkeypatch, dense0)
    assert_agrees(check_case, [seed])
    assert_agrees(check_batched_case, [seed])


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 500, 100))
def test_matches_enumeration_many(start):
    assert_agrees(check_case, range(10_000 + start, 10_100 + start))
    assert_agrees(check_batched_case, range(20_000 + start, 20_100 + start))


@pytest.mark.slow
@pytest.mark.parametrize("dense0", [False, True], ids=["floor-chunksum", "floor-dense0-chunksum"])
def test_matches_enumeration_on_forced_paths_many(monkeypatch, dense0):
    patch(monkeypatch, dense0)
    assert_agrees(check_case, range(30_000, 30_150))
    assert_agrees(check_batched_case, range(40_000, 40_100))
