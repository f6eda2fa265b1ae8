"""Exact MarkovNet queries with evidence in every accepted form (int64/int32/int16/uint8, float with NaN, strided,
transposed, expanded), float64 at ``1e-9`` and float32 at the tolerance
:func:`~tests.infer.mrf_fuzz_edge_cases.mrf_float32_tolerance` derives, against brute-force enumeration
(:mod:`tests.infer.mrf_fuzz_edge_cases`). ``pytest -m slow`` runs more cases."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.infer.mrf_fuzz_edge_cases import check_forms_case

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def assert_agrees(seeds, dtype) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fails = [f for seed in seeds for f in check_forms_case(seed, dtype)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_evidence_forms_match_enumeration(dtype, seed):
    assert_agrees([seed], DTYPES[dtype])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_evidence_forms_match_enumeration_many(dtype):
    assert_agrees(range(10_000, 10_300), DTYPES[dtype])
