"""Exact BayesNet queries on seeded random nets at the edges of the number and evidence formats, against brute
force in log space.

The nets, evidence forms and checks are :mod:`tests.infer.bn_fuzz_edge_cases` and
:mod:`tests.infer.bn_fuzz_edge_checks`: subnormal table entries (``1e-310`` beside ones, p(e) down to
``1e-620``), exact zeros mixed with ones, tiny rows, evidence as int64/int32/int16/uint8/float tensors, strided
slices, transposed columns and expanded views; float64 nets at ``1e-9``, float32 nets against float64 brute force
at the tolerance :func:`~tests.infer.bn_fuzz_edge_checks.float32_tolerance` derives from float32's unit roundoff
and the model's size. The forced paths are those of :mod:`tests.infer.test_exact_fuzz_bayes_net` (thresholds
lowered with ``monkeypatch``), with float32's probability floor raised too. ``pytest -m slow`` runs more cases.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import hybridpgm.infer.bn_spaces as bn_spaces
from tests.infer.bn_fuzz_edge_checks import check_edge_case
from tests.infer.test_exact_fuzz_bayes_net import PATCHES, patch

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def assert_agrees(seeds, dtype) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fails = [f for seed in seeds for f in check_edge_case(seed, dtype)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_edge_nets_match_enumeration(dtype, seed):
    assert_agrees([seed], DTYPES[dtype])


@pytest.mark.parametrize("seed", [100])
@pytest.mark.parametrize("paths", sorted(PATCHES))
def test_edge_nets_match_enumeration_on_forced_paths(monkeypatch, paths, seed):
    patch(monkeypatch, paths)
    monkeypatch.setitem(bn_spaces.PROBABILITY_FLOOR, torch.float32, 1e-3)
    assert_agrees([seed], torch.float64)
    assert_agrees([seed], torch.float32)


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 1000, 250))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_edge_nets_match_enumeration_many(dtype, start):
    assert_agrees(range(10_000 + start, 10_000 + start + 250), DTYPES[dtype])


@pytest.mark.slow
@pytest.mark.parametrize("paths", sorted(PATCHES))
def test_edge_nets_match_enumeration_on_forced_paths_many(monkeypatch, paths):
    patch(monkeypatch, paths)
    monkeypatch.setitem(bn_spaces.PROBABILITY_FLOOR, torch.float32, 1e-3)
    assert_agrees(range(20_000, 20_100), torch.float64)
    assert_agrees(range(20_000, 20_100), torch.float32)
