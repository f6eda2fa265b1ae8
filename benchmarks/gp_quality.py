"""Predictive quality of the GP layers against their plain-network and plain-GP
references, same run: RMSE, negative log predictive density (NLPD) and 95%
interval coverage on held-out data.

* Forecasting (``examples/gp_lstm.py``): GP-LSTM (semi-stochastic training)
  against an LSTM of the same size with a Gaussian output, trained with the
  same steps, batch size and learning rate, on the end of a statsmodels series.
* Regression (``examples/deep_kernel.py``): DKL (exact marginal likelihood,
  optionally KISS-GP) against an exact GP on the raw inputs, an MLP with a
  Gaussian output and SV-DKL (mini-batch Pyro model/guide).

Every number is the mean over ``--seeds`` (and the per-seed values are kept).

    python benchmarks/gp_quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict:
    out = {}
    for model in per_seed[0]:
        out[model] = {}
        for metric in per_seed[0][model]:
            values = [run[model][metric] for run in per_seed]
            out[model][metric] = statistics.fmean(values)
            out[model][f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def main(args: argparse.Namespace) -> dict:
    warnings.simplefilter("ignore")
    gp_lstm, deep_kernel = _load("gp_lstm"), _load("deep_kernel")
    forecasting, regression = [], []
    for seed in args.seeds:
        common = ["--seed", str(seed), "--device", args.device, "--quiet"]
        forecasting.append(gp_lstm.main(gp_lstm.parse_args(
            common + ["--series", args.series, "--num-steps", str(args.lstm_steps)])))
        regression.append(deep_kernel.main(deep_kernel.parse_args(
            common + ["--dataset", args.dataset, "--num-steps", str(args.dkl_steps)]
            + (["--grid-size", str(args.grid_size)] if args.grid_size else []))))
    payload = {
        "forecasting": {"series": args.series, "steps": args.lstm_steps, "models": _summarise(forecasting),
                        "per_seed": forecasting},
        "regression": {"dataset": args.dataset, "steps": args.dkl_steps, "grid_size": args.grid_size,
                       "models": _summarise(regression), "per_seed": regression},
        "seeds": args.seeds,
        "units": "rmse in the data's units, nlpd in nats per point (data units), coverage of the central 95% interval",
    }
    f, r = payload["forecasting"]["models"], payload["regression"]["models"]
    payload["ratios"] = {
        "gp_lstm_over_lstm_rmse": f["gp_lstm"]["rmse"] / f["lstm"]["rmse"],
        "dkl_over_exact_gp_rmse": r["dkl"]["rmse"] / r["exact_gp"]["rmse"],
        "dkl_over_mlp_rmse": r["dkl"]["rmse"] / r["mlp"]["rmse"],
    }
    write_result("gp_quality", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--series", default="sunspots")
    parser.add_argument("--lstm-steps", type=int, default=100)
    parser.add_argument("--dataset", default="synthetic", choices=["synthetic", "diabetes"])
    parser.add_argument("--dkl-steps", type=int, default=200)
    parser.add_argument("--grid-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gp_quality.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
