"""Predictive quality and calibration of the GP layers against their plain-network and
plain-GP references, same run: RMSE, negative log predictive density (NLPD) and the
coverage of central 50/80/95% intervals on held-out data.

* Forecasting: GP-LSTM trained by the library's recipe (:func:`hybridpgm.gp.train_gp_lstm`:
  semi-stochastic steps, the last 20% of the training windows held out, early stopping on
  their NLL, best weights restored, GP conditioned on every window) against an LSTM of the
  same size with a Gaussian output (learned noise) trained the same way (same validation
  tail, early stopping, steps, batch, learning rate).  One-step-ahead predictions of the
  last ``--num-test`` values of each statsmodels series; the square root of sunspot
  numbers (Tong 1990).  RMSE is in the (transformed) series' units.
* Regression: DKL (:func:`hybridpgm.gp.train_deep_kernel`, validation tail + early
  stopping) against an exact GP on the raw inputs (same recipe) and DKL trained for a fixed
  ``--dkl-steps`` without validation (the old recipe), on ``examples/deep_kernel.py``'s data.

Every number is the mean over ``--seeds`` (per-seed values are kept).

    python benchmarks/gp_quality.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NUM_TEST = {"sunspots": 60, "nile": 20, "co2": 60, "elnino": 60}  # held-out values at the end of each series


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(mean: torch.Tensor, sd: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, float]:
    from hybridpgm.gp import calibration

    mean, sd, y = mean.detach(), sd.detach(), y.detach()
    nlpd = -torch.distributions.Normal(mean, sd).log_prob(y).mean().item() + math.log(scale)
    return {"rmse": ((mean - y) ** 2).mean().sqrt().item() * scale, "nlpd": nlpd, **calibration(mean, sd, y)}


def series_data(name: str, num_test: int, window: int) -> dict:
    from hybridpgm.data import load_series, make_windows

    values = load_series(name).values
    if name == "sunspots":
        values = values.sqrt()
    head = values[:-num_test]
    loc, scale = head.mean(), head.std()
    z = ((values - loc) / scale).float()
    x, y = make_windows(z[:-num_test], window)
    x_test, y_test = make_windows(z[-(num_test + window):], window)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "scale": float(scale)}


def forecasting(name: str, seed: int, args, example) -> dict:
    from hybridpgm.gp import train_gp_lstm
    from hybridpgm.gp.validation import fit_validated, split_tail

    data = series_data(name, args.num_test or NUM_TEST[name], args.window)
    common = {"max_steps": args.max_steps, "eval_every": args.eval_every, "patience": args.patience}
    start = time.perf_counter()
    model, run = train_gp_lstm(data["x"], data["y"], hidden_size=args.hidden, num_features=args.features, lr=args.lr,
                               batch_size=args.batch_size, seed=seed, **common)
    pred = model.predict(data["x_test"])
    out = {"gp_lstm": {**report(pred.mean, pred.variance.sqrt(), data["y_test"], data["scale"]),
                       "best_step": run.best_step, "steps": run.steps, "seconds": time.perf_counter() - start}}
    x_fit, y_fit, x_val, y_val = split_tail(data["x"], data["y"])
    torch.manual_seed(seed)
    lstm = example.LSTMRegressor(args.hidden, args.features)

    def val_nll(module):
        mean, sd = module(x_val)
        return float(-torch.distributions.Normal(mean, sd).log_prob(y_val).mean())

    start = time.perf_counter()
    run = fit_validated(example.GaussianNLL(lstm), (x_fit, y_fit), x_val, y_val, score=val_nll, seed=seed,
                        batch_size=args.batch_size, optim=functools.partial(torch.optim.Adam, lr=args.lr), **common)
    lstm.eval()
    with torch.no_grad():
        mean, sd = lstm(data["x_test"])
    out["lstm"] = {**report(mean, sd, data["y_test"], data["scale"]), "best_step": run.best_step, "steps": run.steps,
                   "seconds": time.perf_counter() - start}
    print(name, seed, out, flush=True)
    return out


def regression(seed: int, args, example) -> dict:
    from hybridpgm.gp import train_deep_kernel
    from hybridpgm.nn import mlp

    data = example.load(example.parse_args(["--seed", str(seed), "--dataset", args.dataset]))
    x, y, d = data["x_train"], data["y_train"], data["x_train"].shape[1]  # shuffled: the tail is random
    common = {"max_steps": args.max_steps, "eval_every": args.eval_every, "patience": args.patience, "seed": seed}
    out = {}
    for name, net in (("dkl", lambda: mlp([d, 32, 32, args.features], activation="tanh")), ("exact_gp", lambda: None)):
        torch.manual_seed(seed)
        start = time.perf_counter()
        model, run = train_deep_kernel(x, y, net(), lr=args.lr, **common)
        pred = model.predict(data["x_test"])
        out[name] = {**report(pred.mean, pred.variance.sqrt(), data["y_test"], data["scale"]),
                     "best_step": run.best_step, "steps": run.steps, "seconds": time.perf_counter() - start}
    old = example.train_dkl(data, example.parse_args(["--seed", str(seed), "--num-steps", str(args.dkl_steps),
                                                      "--device", "cpu", "--quiet"]),
                            mlp([d, 32, 32, args.features], activation="tanh"))
    pred = old.predict(data["x_test"])
    out["dkl_no_validation"] = {**report(pred.mean, pred.variance.sqrt(), data["y_test"], data["scale"]),
                                "steps": args.dkl_steps}
    print("regression", seed, out, flush=True)
    return out


def summarise(per_seed: list[dict]) -> dict:
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
    torch.set_num_threads(args.threads)
    gp_lstm, deep_kernel = _load("gp_lstm"), _load("deep_kernel")
    payload = {"seeds": args.seeds, "config": {k: v for k, v in vars(args).items() if k != "out"},
               "units": "rmse in the (transformed) data's units; nlpd in nats per point; coverage_L: fraction "
                        "of held-out targets inside the central L% predictive interval",
               "forecasting": {}}
    for name in args.series:
        runs = [forecasting(name, seed, args, gp_lstm) for seed in args.seeds]
        payload["forecasting"][name] = {"models": summarise(runs), "per_seed": runs,
                                        "num_test": args.num_test or NUM_TEST[name],
                                        "transform": "sqrt" if name == "sunspots" else "none"}
    if not args.skip_regression:
        runs = [regression(seed, args, deep_kernel) for seed in args.seeds]
        payload["regression"] = {"dataset": args.dataset, "models": summarise(runs), "per_seed": runs}
    write_result("gp_quality", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--series", nargs="+", default=["sunspots", "nile", "co2"])
    parser.add_argument("--num-test", type=int, default=None, help=f"held-out values (default {NUM_TEST})")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--dataset", default="synthetic", choices=["synthetic", "diabetes"])
    parser.add_argument("--dkl-steps", type=int, default=200, help="steps of the no-validation DKL reference")
    parser.add_argument("--skip-regression", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gp_quality.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
