"""The BN posterior-sampling benchmark times both ways on every kind, and its Pyro reference samples the
posterior."""

import json
import sys
from pathlib import Path

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bn_sample  # noqa: E402

from tests.graphs.bn_helpers import brute_joint, sprinkler  # noqa: E402


def test_a_tiny_run_times_both_ways_on_both_kinds(tmp_path):
    out = tmp_path / "bn_sample.json"
    torch.manual_seed(0)
    bn_sample.main(bn_sample.parse_args(
        ["--networks", "asia", "--rows", "4", "--samples", "20", "--row-samples", "3", "--rounds", "2",
         "--min-timing-s", "0", "--max-calls", "1", "--out", str(out)]))
    (r,) = json.loads(out.read_text())["results"]
    assert r["network"] == "asia" and r["evidence_nodes"] == 2
    for kind, rows, per_row in [("one_row", 1, 20), ("imputation", 4, 3)]:
        k = r[kind]
        assert (k["rows"], k["samples_per_row"]) == (rows, per_row)
        assert k["speedup_vs_plain_pyro"] == k["plain_pyro_s_per_sample"] / k["hybridpgm_s_per_sample"]
        assert set(k["max_z"]) == {"hybridpgm", "plain_pyro"}


def test_the_pyro_reference_samples_the_posterior():
    """Chi-square goodness of fit of 20,000 draws of (rain, sprinkler) given wet grass (a fixed seed)."""
    bn = sprinkler().double()
    rows, logp = brute_joint(bn)
    n = 20_000
    torch.manual_seed(2)
    x = bn_sample.plain_pyro_sample(bn, {"wet": torch.tensor([1])}, n)
    wet = rows[:, 2] == 1
    p = (logp[wet] - logp[wet].logsumexp(0)).exp()[1:]  # (rain, sprinkler) = (0, 0) cannot wet the grass
    counts = torch.bincount(2 * x["rain"] + x["sprinkler"], minlength=4).double()
    assert counts[0] == 0 and bool((x["wet"] == 1).all())
    assert stats.chisquare(counts[1:].numpy(), (n * p).numpy()).pvalue > 1e-4


def test_max_z_standardises_the_summed_counts():
    bn = sprinkler().double()
    evidence = {"wet": torch.tensor([1, 1])}
    post = bn.posterior(None, evidence)
    exact = {v: torch.multinomial(p, 400, replacement=True, generator=torch.Generator().manual_seed(3)).T
             for v, p in post.items()}  # [400, 2]: true posterior draws
    assert bn_sample.max_z(bn, exact, evidence, 2, 400) < 4
    wrong = {v: torch.zeros_like(x) for v, x in exact.items()}  # always state 0
    assert bn_sample.max_z(bn, wrong, evidence, 2, 400) > 20
