"""Evidence tables (:meth:`~hybridpgm.graphs.BayesNet.compile_evidence`, every layout) of seeded random nets
against brute force in log space and against the plain queries on the same evidence.

The nets, evidence forms and checks are :mod:`tests.infer.bn_fuzz_edge_cases` and
:func:`tests.infer.bn_fuzz_edge_checks.check_table_case` (float64 at ``1e-9``; float32 at the derived tolerance of
:func:`~tests.infer.bn_fuzz_edge_checks.float32_tolerance`). The variants lower, with ``monkeypatch``, the build's
chunk (``BUILD_CHUNK_BYTES = 1``: one configuration per batched query), the compact layout's cancellation limit
(``CANCELLATION`` 0: every row observing a dropped state is answered by the contraction) and the dense
threshold. The seeds ``UNDERFLOW`` draw float64 nets with configurations of p(e) under float64's smallest normal
number (the tables answered those rows ``-inf``, or a subnormal's few digits, before they were answered by the
contraction). ``pytest -m slow`` runs more cases.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import hybridpgm.infer.bn_dense as bn_dense
import hybridpgm.infer.evidence_table as evidence_table
from tests.infer.bn_fuzz_edge_checks import check_table_case

DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: seeds whose nets hold evidence of p(e) under 2.2e-308 (found by the fuzzer of session 42, FUZZ2)
UNDERFLOW = [200689, 200762, 200766, 200849, 200871]


def assert_agrees(seeds, dtype) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fails = [f for seed in seeds for f in check_table_case(seed, dtype)]
    assert not fails, "\n".join(fails[:5])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_tables_match_enumeration_and_plain_queries(dtype, seed):
    assert_agrees([seed], DTYPES[dtype])


@pytest.mark.parametrize("seed", UNDERFLOW)
def test_tables_of_probabilities_under_float64_range(seed):
    assert_agrees([seed], torch.float64)


@pytest.mark.parametrize("seed", range(100, 102))
def test_tables_match_on_forced_paths(monkeypatch, seed):
    monkeypatch.setattr(evidence_table, "BUILD_CHUNK_BYTES", 1)
    monkeypatch.setitem(evidence_table.CANCELLATION, torch.float64, 0.0)
    monkeypatch.setitem(evidence_table.CANCELLATION, torch.float32, 0.0)
    monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    assert_agrees([seed], torch.float64)
    assert_agrees([seed], torch.float32)


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, 600, 200))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_tables_match_many(dtype, start):
    assert_agrees(range(30_000 + start, 30_000 + start + 200), DTYPES[dtype])


@pytest.mark.slow
def test_tables_match_on_forced_paths_many(monkeypatch):
    monkeypatch.setattr(evidence_table, "BUILD_CHUNK_BYTES", 1)
    monkeypatch.setitem(evidence_table.CANCELLATION, torch.float64, 0.0)
    monkeypatch.setitem(evidence_table.CANCELLATION, torch.float32, 0.0)
    monkeypatch.setattr(bn_dense, "DENSE_MAX", 0)
    assert_agrees(range(40_000, 40_150), torch.float64)
    assert_agrees(range(40_000, 40_150), torch.float32)
