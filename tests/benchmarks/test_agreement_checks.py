"""Each speed benchmark checks that its sides answer alike, and fails when a wrong implementation is patched in:
a speed ratio between two different computations measures nothing."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bn_inference  # noqa: E402
import bn_sample  # noqa: E402
import bp_vs_pgmax  # noqa: E402
import common  # noqa: E402
import crf_speed  # noqa: E402
import dkl_step  # noqa: E402
import gp_scaling  # noqa: E402
import mrf_sample  # noqa: E402
import vae_step  # noqa: E402

from hybridpgm.graphs import BayesNet, LinearChainCRF  # noqa: E402


def test_check_agreement_names_the_quantity_value_and_tolerance():
    assert common.check_agreement("x", 1e-5, 1e-4) == 1e-5
    with pytest.raises(RuntimeError, match=r"the loss = 0\.5 exceeds the tolerance 0\.0001"):
        common.check_agreement("the loss", 0.5, 1e-4)
    with pytest.raises(RuntimeError, match="nan"):
        common.check_agreement("the loss", float("nan"), 1e-4)
    assert common.tolerance(torch.float64) == 1e-9 and common.tolerance(torch.float32) == 1e-4
    assert common.relative_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])) == 0.5
    assert common.relative_error(torch.zeros(2), torch.zeros(3)) == float("inf")


# ------------------------------------------------------------------------------------------------- crf_speed
def _crf_args(tmp_path):
    return crf_speed.parse_args(["--shapes", "4x20x5", "--rounds", "2", "--out", str(tmp_path / "crf.json")])


def test_crf_speed_records_the_relative_errors_within_float32_tolerance(tmp_path):
    crf_speed.main(_crf_args(tmp_path))
    (row,) = json.loads((tmp_path / "crf.json").read_text())["rows"]
    for quantity in ("loss", "grad_unary", "grad_transition"):
        for side in ("hybridpgm", "pytorch_crf"):
            assert row[f"relative_error_{side}_{quantity}_vs_float64"] <= row["tolerance_relative"] == 1e-4


def test_crf_speed_fails_on_a_wrong_crf(tmp_path, monkeypatch):
    class Wrong(LinearChainCRF):  # transitions halved
        def __init__(self, u, trans, start, end):
            super().__init__(u, 0.5 * trans, start, end)

    monkeypatch.setattr(crf_speed, "LinearChainCRF", Wrong)
    # pytorch-crf draws its transitions from the global stream: how far the halved ones move the loss depends on
    # them (a run where the loss stayed within 1e-4 failed on the gradients instead), so any quantity may be first
    with torch.random.fork_rng(), pytest.raises(
            RuntimeError, match=r"relative error of hybridpgm's (loss|grad_unary|grad_transition) against the "
                                r"float64 step"):
        torch.manual_seed(0)
        crf_speed.main(_crf_args(tmp_path))
    assert not (tmp_path / "crf.json").exists()


# ------------------------------------------------------------------------------------------------ bp_vs_pgmax
class _FakePGMax:
    """Stands in for the PGMax child (JAX is not installed here): answers with ``answer(J, h)`` marginals."""

    def __init__(self, answer):
        self.answer = answer

    def ask(self, cmd, **msg):
        if cmd == "setup":
            data = np.load(msg["npz"])
            self.marginals = self.answer(data["J"], data["h"], int(data["side"]))
            return {"compile_s": 0.0, "cpu_affinity": [0]}
        if cmd == "time":
            return {"seconds": 1e-3}
        np.save(msg["out"], self.marginals)
        return {"ok": True}


def _bp_marginals(J, h, side, flip=False):
    from hybridpgm.graphs import ising_grid
    from hybridpgm.infer import BeliefPropagation

    fg = ising_grid(side, side, torch.as_tensor(J), torch.as_tensor(h)).factor_graph()
    with torch.no_grad():
        m = BeliefPropagation(num_iters=5, damping=0.0, tol=0.0)(fg).marginals.numpy()
    return m[..., ::-1].copy() if flip else m  # flip: the states swapped, a wrong answer


def _bp_args():
    return bp_vs_pgmax.parse_args(["--sizes", "3", "--batches", "2", "--iters", "5", "--rounds", "2",
                                   "--warmup", "0"])


def test_bp_vs_pgmax_passes_when_the_marginals_agree(tmp_path):
    row = bp_vs_pgmax.bench_one(3, 2, _bp_args(), _FakePGMax(_bp_marginals), tmp_path)
    assert row["max_abs_marginal_diff"] <= row["tolerance_abs"] == 1e-4
    assert row["pgmax_cpu_affinity"] == [0]


def test_bp_vs_pgmax_fails_when_the_marginals_disagree(tmp_path):
    wrong = _FakePGMax(lambda J, h, side: _bp_marginals(J, h, side, flip=True))
    with pytest.raises(RuntimeError, match=r"max \|hybridpgm - PGMax\| marginal \(3x3, batch 2\)"):
        bp_vs_pgmax.bench_one(3, 2, _bp_args(), wrong, tmp_path)


# ----------------------------------------------------------------------------------------------- bn_inference
def _bn_args(tmp_path, *extra):
    return bn_inference.parse_args(["--networks", "asia", "--rows", "6", "--rounds", "3", "--pgmpy-rows", "3",
                                    "--junction-tree-rows", "0", "--min-timing-s", "0", "--max-calls", "1",
                                    "--out", str(tmp_path / "bn.json"), *extra])


def test_bn_inference_one_row_kind_answers_the_rows_pgmpy_answers(tmp_path):
    (res,) = bn_inference.main(_bn_args(tmp_path))["results"]
    assert res["one_row_rows"] == res["pgmpy_rows_timed"] == 3
    bn = bn_inference.load_network("asia")
    args = _bn_args(tmp_path)
    ev_nodes, _, _, _, mixed = bn_inference.evidence_batches(bn, args)
    for r, marginals in enumerate(res["one_row_marginals"]):  # every node not observed in that mixed row
        assert marginals == len(bn.nodes) - sum(int(mixed[v][r]) >= 0 for v in ev_nodes)
    assert res["max_abs_diff_one_row_vs_pgmpy"] <= res["tolerance_abs"] == 1e-9
    assert res["max_abs_diff_vs_pgmpy"] <= 1e-9 and res["max_abs_diff_compiled_vs_pgmpy"] <= 1e-9


def test_bn_inference_fails_on_wrong_marginals(tmp_path, monkeypatch):
    orig = BayesNet.posterior

    def uniform(self, query=None, evidence=None, **kw):  # every marginal uniform
        post = orig(self, query, evidence, **kw)
        return {v: torch.full_like(p, 1.0 / p.shape[-1]) for v, p in post.items()}

    monkeypatch.setattr(BayesNet, "posterior", uniform)
    with pytest.raises(RuntimeError, match=r"asia: max \|mixed batch - pgmpy\| marginal"):
        bn_inference.main(_bn_args(tmp_path))


def test_bn_inference_fails_when_the_table_disagrees_with_the_mixed_batch(tmp_path, monkeypatch):
    from hybridpgm.infer.evidence_table import EvidenceTable

    orig = EvidenceTable.posterior

    def shifted(self, *a, **kw):
        return {v: p * 0.5 for v, p in orig(self, *a, **kw).items()}

    monkeypatch.setattr(EvidenceTable, "posterior", shifted)
    with pytest.raises(RuntimeError, match=r"evidence table - (pgmpy|mixed batch)"):
        bn_inference.main(_bn_args(tmp_path, "--pgmpy-rows", "0"))


def test_bn_inference_fails_when_the_one_row_query_is_not_pgmpy_s(tmp_path, monkeypatch):
    real = bn_inference._one_row_queries

    def fully_observed(bn, mixed, ev_nodes, n):  # the old one-row kind: every evidence node observed
        return [([v for v in bn.nodes if v not in ev_nodes], {v: torch.zeros(1, dtype=torch.long) for v in ev_nodes})
                for _ in real(bn, mixed, ev_nodes, n)]

    monkeypatch.setattr(bn_inference, "_one_row_queries", fully_observed)
    with pytest.raises(RuntimeError, match="answer different queries"):
        bn_inference.main(_bn_args(tmp_path))


# ------------------------------------------------------------------------------------------------ bn_sample
def _bn_sample_args(tmp_path):
    return bn_sample.parse_args(["--networks", "asia", "--rows", "20", "--samples", "200", "--row-samples", "5",
                                 "--rounds", "1", "--min-timing-s", "0", "--max-calls", "1",
                                 "--out", str(tmp_path / "bs.json")])


def test_bn_sample_passes_exact_samplers_and_records_the_check(tmp_path):
    torch.manual_seed(0)
    (res,) = bn_sample.main(_bn_sample_args(tmp_path))["results"]
    for kind in ("one_row", "imputation"):
        assert set(res[kind]["max_error_over_bound"]) == {"hybridpgm", "plain_pyro"}
        assert max(res[kind]["max_error_over_bound"].values()) <= 1.0


def test_bn_sample_fails_on_a_sampler_that_ignores_the_evidence(tmp_path, monkeypatch):
    """Before, ``max_z`` was only written: samples of the prior, the evidence copied in, passed."""
    real = BayesNet.sample

    def prior(self, n, evidence=None, **kw):  # draws the unobserved nodes from the prior
        out = real(self, n, evidence=evidence, **kw)
        if evidence is None:
            return out
        shape = next(iter(out.values())).shape
        free = {v: x.reshape(shape) for v, x in real(self, shape.numel()).items()}
        return {v: torch.where(evidence[v].reshape(-1) >= 0, evidence[v].reshape(-1), x) if v in evidence else x
                for v, x in free.items()}

    monkeypatch.setattr(BayesNet, "sample", prior)
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match=r"asia one_row: hybridpgm's samples against bn.posterior, max \|count - "
                                           r"expected\| / Bernstein bound = [0-9.]+ exceeds the tolerance 1"):
        bn_sample.main(_bn_sample_args(tmp_path))
    assert not (tmp_path / "bs.json").exists()


# ----------------------------------------------------------------------------------------------- mrf_sample
def _sample_args(tmp_path):
    return mrf_sample.parse_args(["--sides", "3", "--potts-side", "0", "--samples", "2000", "--pyro-max-side", "0",
                                  "--sequential-max-side", "0", "--rounds", "1", "--min-timing-s", "0",
                                  "--max-calls", "1", "--out", str(tmp_path / "s.json")])


def test_mrf_sample_passes_a_correct_sampler_and_records_the_check(tmp_path):
    torch.manual_seed(0)
    (res,) = mrf_sample.main(_sample_args(tmp_path))["results"]
    assert res["max_frequency_error_over_bound"]["hybridpgm"] <= 1.0


def test_mrf_sample_fails_on_a_sampler_of_the_wrong_joint(tmp_path, monkeypatch):
    real = mrf_sample.mrf_exact.exact_sample
    monkeypatch.setattr(mrf_sample.mrf_exact, "exact_sample", lambda fg, n: 1 - real(fg, n))  # spins flipped
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="hybridpgm's samples disagree with the exact marginals"):
        mrf_sample.main(_sample_args(tmp_path))


def test_the_frequency_bound_is_about_seven_standard_errors_at_a_thousand_samples():
    bound = mrf_sample.frequency_bounds(torch.tensor([[0.5]]), 1000, 392)
    assert 6.5 < float(bound) / (0.25 / 1000) ** 0.5 < 7.2


# ----------------------------------------------------------------------------------------------- vae_step
def _vae_args(tmp_path):
    return vae_step.parse_args(["--batch-size", "8", "--x-dim", "16", "--hidden", "8", "--z-dim", "2", "--steps",
                                "2", "--rounds", "1", "--out", str(tmp_path / "vae.json")])


def test_vae_step_checks_both_sides_compute_the_same_loss(tmp_path):
    res = vae_step.main(_vae_args(tmp_path))
    same = res["same_objective_at_start"]
    assert abs(same["reference_loss"] - same["fit_loss"]) <= 1e-4 * abs(same["reference_loss"])


def test_vae_step_fails_when_the_reference_computes_another_objective(tmp_path, monkeypatch):
    real = vae_step.PlainVAE.loss
    monkeypatch.setattr(vae_step.PlainVAE, "loss", lambda self, x: 0.9 * real(self, x))
    with pytest.raises(RuntimeError, match="reference's loss and fit's"):
        vae_step.main(_vae_args(tmp_path))


# ---------------------------------------------------------------------------- dkl_step, gp_scaling: timing
def test_dkl_step_times_fit_s_steps_between_synchronisations(monkeypatch):
    """fit's step time is read by the callback between two device synchronisations (one before the first step,
    two around each callback), not from history.examples_per_second, which no synchronisation bounds."""
    syncs = []
    monkeypatch.setattr(dkl_step, "_sync", lambda device: syncs.append(device))
    args = dkl_step.parse_args(["--n", "32", "--hidden", "8", "--grid-size", "16", "--steps", "3"])
    x, y = dkl_step.make_data(args.n, args.dim, args.seed, torch.device("cpu"))
    net = dkl_step.feature_extractor(args.dim, args.hidden, args.features)
    model = dkl_step.DeepKernelGP(x, y, net, grid_size=args.grid_size)
    times, losses = dkl_step.run_round(model, model.state_dict(), [], x, y, args, 0)
    assert len(times) == len(losses) == 3 and min(times) > 0
    assert len(syncs) == 1 + 2 * 3


def test_gp_scaling_runs_one_thread_by_default():
    assert gp_scaling.parse_args([]).threads == 1
