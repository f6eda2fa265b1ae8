"""The exact-sampling benchmark times every way on the same models, and its references sample the right joint."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import mrf_sample  # noqa: E402

from hybridpgm.graphs import ising_grid  # noqa: E402
from tests.graphs.mrf_brute_force import assignments, brute_force  # noqa: E402


def test_a_tiny_run_times_every_way_it_should(tmp_path):
    out = tmp_path / "sample.json"
    torch.manual_seed(0)
    mrf_sample.main(mrf_sample.parse_args(
        ["--sides", "2", "3", "--potts-side", "2", "--samples", "50", "--pyro-max-side", "2",
         "--sequential-max-side", "3", "--rounds", "2", "--min-timing-s", "0", "--max-calls", "1",
         "--out", str(out)]))
    results = json.loads(out.read_text())["results"]
    assert [r["model"] for r in results] == ["ising 2x2", "ising 3x3", "potts3 2x2"]
    assert [set(r["max_z"]) for r in results] == [{"hybridpgm", "plain_pyro", "sequential"},
                                                  {"hybridpgm", "sequential"},
                                                  {"hybridpgm", "plain_pyro", "sequential"}]
    for r in results:  # every way's frequencies within their bounds (the script raises otherwise)
        assert set(r["max_frequency_error_over_bound"]) == set(r["max_z"])
        assert max(r["max_frequency_error_over_bound"].values()) <= 1.0
        for w in set(r["max_z"]) - {"hybridpgm"}:
            assert r[f"speedup_vs_{w}"] == r[f"{w}_s_per_sample"] / r["hybridpgm_s_per_sample"]


@pytest.mark.parametrize("way", ["plain_pyro", "sequential"])
def test_the_references_sample_the_joint(way):
    """Chi-square goodness of fit of 20,000 draws over the 16 states of a loopy 2x2 grid (a fixed seed)."""
    J = torch.tensor([0.8, -0.6, 0.4, 1.0], dtype=torch.float64)
    mrf = ising_grid(2, 2, J, torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=torch.float64))
    n = 20_000
    torch.manual_seed(1)
    x = mrf_sample.plain_pyro_sample(mrf, n) if way == "plain_pyro" else \
        mrf_sample.sequential_sample(mrf.factor_graph(), n)
    values, rows = assignments(mrf)
    p = (mrf.score(values) - brute_force(mrf)[0]).exp()
    counts = torch.bincount((x * torch.tensor([8, 4, 2, 1])).sum(-1), minlength=16).double()
    assert torch.equal(rows @ torch.tensor([8, 4, 2, 1]), torch.arange(16))
    assert stats.chisquare(counts.numpy(), (n * p).numpy()).pvalue > 1e-4


def test_max_z_is_the_largest_standardised_frequency_error():
    samples = torch.tensor([[0, 1], [0, 1], [1, 1], [0, 0]])  # frequencies of state 1: 0.25 and 0.75
    marginals = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # variable 0: |0.75 - 0.5| / sqrt(0.25 / 4) = 1 for both states; variable 1 has p in {0, 1}: skipped
    assert mrf_sample.max_z(samples, marginals) == pytest.approx(1.0)
    assert math.isclose(mrf_sample.max_z(samples[:, :1], torch.tensor([[0.25, 0.75]])),
                        0.5 / math.sqrt(0.1875 / 4))
