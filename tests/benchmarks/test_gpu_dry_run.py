"""``benchmarks/gpu.sh --dry-run``: every speed benchmark of the GPU suite runs end to end on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_suite_dry_run_runs_every_benchmark(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert summary["dry_run"] is True and summary["device"] == "cpu"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_suite import SUITE

    assert set(summary["benchmarks"]) == {name for name, *_ in SUITE}
    records = {}
    for name, info in summary["benchmarks"].items():
        assert info["status"] == "ok", name
        records[name] = record = json.loads((tmp_path / f"{name}.json").read_text())
        assert "machine" in record  # every benchmark writes the machine (and CUDA device) description
    assert summary["nccl_2proc"]["status"] == "skipped"
    # "ok" means each script's own agreement checks passed (they raise otherwise); the JSON says so too
    for row in records["crf_speed"]["rows"]:
        for quantity in ("loss", "grad_unary", "grad_transition"):
            for side in ("hybridpgm", "pytorch_crf"):
                assert row[f"relative_error_{side}_{quantity}_vs_float64"] <= row["tolerance_relative"] == 1e-4
    same = records["vae_step"]["same_objective_at_start"]
    assert abs(same["reference_loss"] - same["fit_loss"]) <= 1e-4 * abs(same["reference_loss"])
    dkl = records["dkl_step"]["same_model"]
    assert abs(dkl["reference_loss_at_init"] - dkl["hybridpgm_loss_at_init"]) <= 1e-4 * abs(
        dkl["reference_loss_at_init"]) + 1e-5
    for r in records["mrf_sample"]["results"]:
        assert max(r["max_frequency_error_over_bound"].values()) <= 1.0
    for r in records["mrf_exact"]["results"]:
        for what in ("log_z", "marginals"):
            assert max(r[what]["max_abs_diff_vs_plain_pyro"].values()) <= 1e-9
    for name in ("bn_inference", "bn_inference_barley"):
        for r in records[name]["results"]:
            assert r.get("max_abs_diff_compiled_vs_mixed", 0.0) <= 1e-9
    assert records["recipes"]["failed"] == []
    assert all(row["load"]["finite"] for row in records["recipes"]["results"].values())


def test_gpu_suite_starts_nothing_once_its_budget_is_spent(tmp_path, capsys):
    """In this process (``gpu.sh`` hands its arguments to ``gpu_suite.main`` as they are: the dry run above runs
    it): a fresh interpreter cost seconds of imports for a run that starts no benchmark."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_suite

    assert gpu_suite.main(["--dry-run", "--out", str(tmp_path), "--budget-minutes", "0",
                           "--only", "crf_speed", "vae_step"]) == 0
    assert "crf_speed: skipped, the suite's 0 s budget is spent" in capsys.readouterr().out
    summary = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert summary["budget_s"] == 0
    assert {name: info["status"] for name, info in summary["benchmarks"].items()} == \
        {"crf_speed": "skipped (budget)", "vae_step": "skipped (budget)"}
    assert not (tmp_path / "crf_speed.json").exists()


def test_every_benchmark_takes_the_suite_s_full_size_arguments(tmp_path):
    """The device sizes are run only where a GPU is lent; their arguments must still parse everywhere."""
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_suite import SUITE

    for name, module, full, _ in SUITE:
        args = importlib.import_module(module).parse_args(full + ["--device", "cuda", "--out", str(tmp_path / name)])
        assert args.device == "cuda", name
