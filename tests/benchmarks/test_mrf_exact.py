"""The exact-MRF benchmark times every way on the same models, with the same answers, and leaves the floors alone."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import mrf_exact  # noqa: E402
import torch  # noqa: E402

from hybridpgm.graphs import ising_grid  # noqa: E402
from hybridpgm.infer import bn_contract  # noqa: E402
from tests.graphs.mrf_brute_force import brute_force  # noqa: E402


def test_a_tiny_run_times_every_way_and_leaves_the_floors_as_found(tmp_path):
    found = dict(bn_contract.PROBABILITY_FLOOR)
    out = tmp_path / "mrf.json"
    mrf_exact.main(mrf_exact.parse_args(
        ["--sides", "3", "--batched-side", "2", "--batch", "3", "--potts-side", "2", "--rounds", "2",
         "--min-timing-s", "0", "--max-calls", "1", "--pgmpy-potts", "--out", str(out)]))
    results = json.loads(out.read_text())["results"]
    assert [r["model"] for r in results] == ["ising 3x3", "ising 2x2 x3", "potts3 2x2"]
    for r in results:
        ways = ["hybridpgm", "log_space", "plain_pyro"] + (["pgmpy"] if r["models_per_call"] == 1 else [])
        for kind in ("log_z", "marginals"):
            k = r[kind]
            for w in ways[1:]:
                assert k[f"speedup_vs_{w}"] == k[f"{w}_s_per_model"] / k["hybridpgm_s_per_model"]
            assert set(k["max_abs_diff_vs_plain_pyro"]) == set(ways)
            assert max(k["max_abs_diff_vs_plain_pyro"].values()) < 1e-10
    assert bn_contract.PROBABILITY_FLOOR == found


def test_the_references_give_the_exact_answers():
    """Plain Pyro's einsum and pgmpy's calibrated junction tree give brute force's answers on a loopy grid."""
    J = torch.tensor([0.4, -0.7, 0.2, 0.9, -0.3, 0.5, 0.6, -0.8, 0.1, 0.3, -0.2, 0.7], dtype=torch.float64)
    mrf = ising_grid(3, 3, J, torch.linspace(-0.3, 0.3, 9, dtype=torch.float64))
    fg = mrf.factor_graph()
    log_z, marg = mrf_exact.plain_pyro_marginals(fg)
    want_z, marginals = brute_force(mrf)
    want = torch.stack(list(marginals.values()))
    assert torch.allclose(log_z, want_z.reshape(1), atol=1e-12) and torch.allclose(marg[0], want, atol=1e-12)
    pg_z, pg_marg = mrf_exact.pgmpy_query(*mrf_exact.pgmpy_model(mrf, fg), True)
    assert torch.allclose(pg_z, want_z.reshape(1), atol=1e-12) and torch.allclose(pg_marg[0], want, atol=1e-12)
