"""GP-LSTM forecasting of yearly sunspot numbers (or CO2) with 95% intervals,
next to a plain LSTM of the same size trained the same way.

Shows: :class:`hybridpgm.gp.GPLSTM` (an LSTM feature extractor under an exact
GP) trained by :func:`hybridpgm.fit` with the semi-stochastic scheme
(:class:`hybridpgm.gp.SemiStochasticObjective`: full-data GP hyperparameter
steps alternating with mini-batch LSTM steps), one-step-ahead predictive
intervals on the held-out end of the series, a multi-step forecast by sampled
paths, and the same metrics for an LSTM with a Gaussian output (learned noise).

Paper: Al-Shedivat, Wilson, Saatchi, Hu & Xing, *Learning Scalable Deep Kernels
with Recurrent Structure*, JMLR 2017.

    python examples/gp_lstm.py --num-steps 100 --out runs/gp_lstm

The series come with statsmodels: ``pip install 'hybridpgm[timeseries]'``.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import torch
from torch import nn

import hybridpgm
from hybridpgm.data import load_series, make_windows
from hybridpgm.gp import GPLSTM, LSTMFeatures, SemiStochasticObjective
from hybridpgm.recipes.common import seed_int


class LSTMRegressor(nn.Module):
    """The baseline: the same LSTM, a linear head to a mean, a learned noise scale."""

    def __init__(self, hidden_size: int, num_features: int):
        super().__init__()
        self.features = LSTMFeatures(1, hidden_size, num_features)
        self.out = nn.Linear(num_features, 1)
        self.log_noise = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.out(self.features(x)).squeeze(-1), self.log_noise.exp().expand(x.shape[0])


class GaussianNLL:
    """Objective: mean Gaussian negative log-likelihood, one player ``"net"``."""

    def __init__(self, module: LSTMRegressor):
        self.module = module

    def players(self):
        return {"net": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        mean, sd = self.module(x)
        return -torch.distributions.Normal(mean, sd).log_prob(y).mean()


def prepare(args) -> dict:
    """Standardized windows: train on all but the last ``num_test`` values,
    test on one-step-ahead predictions of those."""
    series = load_series(args.series)
    values = series.values
    train = values[:-args.num_test]
    loc, scale = train.mean(), train.std()
    z = ((values - loc) / scale).to(torch.get_default_dtype())  # the dtype the GP-LSTM is built in
    x_train, y_train = make_windows(z[:-args.num_test], args.window)
    x_test, y_test = make_windows(z[-(args.num_test + args.window):], args.window)
    return {"series": series, "loc": float(loc), "scale": float(scale), "z": z, "x_train": x_train,
            "y_train": y_train, "x_test": x_test, "y_test": y_test}


def metrics(mean: torch.Tensor, sd: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, float]:
    """RMSE and NLPD in the series' units, and the coverage of the 95% interval."""
    z = 1.959963984540054
    nlpd = -torch.distributions.Normal(mean, sd).log_prob(y).mean().item() + math.log(scale)
    return {"rmse": ((mean - y) ** 2).mean().sqrt().item() * scale, "nlpd": nlpd,
            "coverage": ((y >= mean - z * sd) & (y <= mean + z * sd)).float().mean().item()}


def train_gp_lstm(data: dict, args) -> GPLSTM:
    torch.manual_seed(args.seed)
    model = GPLSTM(data["x_train"], data["y_train"], hidden_size=args.hidden, num_features=args.features,
                   grid_size=args.grid_size)
    objective = SemiStochasticObjective(model)
    hybridpgm.fit(objective, objective.dataset(), batch_size=args.batch_size, max_steps=args.num_steps,
                  device=args.device, seed=args.seed, progress=not args.quiet,
                  optim=functools.partial(torch.optim.Adam, lr=args.lr))
    return model


def train_lstm(data: dict, args) -> LSTMRegressor:
    torch.manual_seed(args.seed)
    model = LSTMRegressor(args.hidden, args.features)
    hybridpgm.fit(GaussianNLL(model), (data["x_train"], data["y_train"]), batch_size=args.batch_size,
                  max_steps=args.num_steps, device=args.device, seed=args.seed, progress=not args.quiet,
                  optim=functools.partial(torch.optim.Adam, lr=args.lr))
    return model


def plot(data: dict, pred, forecast, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = data["series"]
    to_units = lambda t: t.cpu() * data["scale"] + data["loc"]  # noqa: E731
    t_test = s.times[-len(data["y_test"]):]
    lower, upper = pred.interval(0.95)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(s.times, s.values, color="k", lw=0.8, label=s.name)
    ax.plot(t_test, to_units(pred.mean), color="C0", label="GP-LSTM one step ahead")
    ax.fill_between(t_test, to_units(lower), to_units(upper), color="C0", alpha=0.25, label="95% interval")
    t_f = t_test[:len(forecast.mean)]
    ax.plot(t_f, to_units(forecast.mean), color="C3", ls="--", label="multi-step forecast")
    ax.fill_between(t_f, to_units(forecast.lower), to_units(forecast.upper), color="C3", alpha=0.15)
    ax.set_xlim(float(s.times[-3 * len(t_test)]), float(s.times[-1]) + 1)
    ax.legend(loc="upper left", fontsize=7)
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    data = prepare(args)
    model = train_gp_lstm(data, args)
    device = model.train_x.device
    x_test, y_test = data["x_test"].to(device), data["y_test"].to(device)
    pred = model.predict(x_test)
    report = {"gp_lstm": metrics(pred.mean, pred.stddev, y_test, data["scale"])}
    context = data["z"][-args.num_test - args.window:-args.num_test]  # the last training window
    forecast = model.forecast(context.to(device), steps=args.horizon, num_samples=args.forecast_samples,
                              generator=torch.Generator().manual_seed(args.seed))
    if args.compare_lstm:
        lstm = train_lstm(data, args)
        lstm.eval()
        with torch.no_grad():
            mean, sd = lstm(x_test.to(next(lstm.parameters()).device))
        report["lstm"] = metrics(mean, sd, y_test.to(mean.device), data["scale"])
    for name, values in report.items():
        print(f"{name:8s} " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot(data, pred, forecast, out / "gp_lstm_forecast.png")
        print(f"wrote {out / 'gp_lstm_forecast.png'}")
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--series", default="sunspots", choices=["sunspots", "co2", "nile", "elnino"])
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--num-test", type=int, default=60, help="held-out values at the end of the series")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--grid-size", type=int, default=None, help="KISS-GP grid points per feature")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--forecast-samples", type=int, default=200)
    parser.add_argument("--no-compare-lstm", dest="compare_lstm", action="store_false")
    parser.add_argument("--out", default=None, help="directory for the forecast plot")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
