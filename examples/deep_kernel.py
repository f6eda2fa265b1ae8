"""Deep kernel learning on a regression set: DKL against an exact GP, an MLP
and stochastic-variational DKL trained with mini-batches as a Pyro model.

Shows: :class:`hybridpgm.gp.DeepKernelGP` (an MLP feature extractor under an
exact or KISS-GP kernel, trained end to end on the exact marginal likelihood
by :func:`hybridpgm.fit` with :class:`hybridpgm.gp.ExactMLLObjective`),
:class:`hybridpgm.gp.SVDeepKernelGP` (a Pyro model/guide trained through
``fit`` with mini-batches), a plain GPyTorch-kernel exact GP on the raw inputs
and an MLP with a Gaussian output, compared by RMSE, negative log predictive
density and 95% interval coverage on a test split.

The default data set is synthetic with a discontinuity (a step along a
direction plus a smooth part), where a stationary kernel on the raw inputs
struggles and learned features help; ``--dataset diabetes`` uses
scikit-learn's bundled diabetes data.

Papers: Wilson, Hu, Salakhutdinov & Xing, *Deep Kernel Learning* (AISTATS
2016) and *Stochastic Variational Deep Kernel Learning* (NeurIPS 2016);
Wilson & Nickisch, *KISS-GP* (ICML 2015).

    python examples/deep_kernel.py --num-steps 300 --grid-size 64
"""

from __future__ import annotations

import argparse
import functools
import math

import torch
from torch import nn

import hybridpgm
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective, SVDeepKernelGP
from hybridpgm.nn import mlp
from hybridpgm.recipes.common import seed_int


def load(args) -> dict[str, torch.Tensor]:
    """Standardized train/test split of the chosen regression set."""
    g = torch.Generator().manual_seed(args.seed)
    if args.dataset == "diabetes":
        from sklearn.datasets import load_diabetes

        data = load_diabetes()
        x = torch.as_tensor(data.data, dtype=torch.float32)
        y = torch.as_tensor(data.target, dtype=torch.float32)
    else:
        n = args.num_data
        x = torch.rand(n, 4, generator=g) * 2 - 1
        y = (x[:, 0] + x[:, 1] > 0).float() * 2 + torch.sin(3 * x[:, 2]) + 0.1 * torch.randn(n, generator=g)
    order = torch.randperm(x.shape[0], generator=g)
    x, y = x[order], y[order]
    num_test = x.shape[0] // 4
    x = (x - x[num_test:].mean(0)) / x[num_test:].std(0)
    loc, scale = y[num_test:].mean(), y[num_test:].std()
    y = (y - loc) / scale
    return {"x_train": x[num_test:], "y_train": y[num_test:], "x_test": x[:num_test], "y_test": y[:num_test],
            "scale": float(scale)}


def metrics(mean: torch.Tensor, sd: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, float]:
    """RMSE and NLPD in the data's units, coverage of the central 95% interval."""
    z = 1.959963984540054
    return {"rmse": ((mean - y) ** 2).mean().sqrt().item() * scale,
            "nlpd": -torch.distributions.Normal(mean, sd).log_prob(y).mean().item() + math.log(scale),
            "coverage": ((y >= mean - z * sd) & (y <= mean + z * sd)).float().mean().item()}


def _adam(lr: float):
    return functools.partial(torch.optim.Adam, lr=lr)


def train_dkl(data, args, feature_extractor: nn.Module | None) -> DeepKernelGP:
    torch.manual_seed(args.seed)
    x, y = data["x_train"], data["y_train"]
    model = DeepKernelGP(x, y, feature_extractor, grid_size=args.grid_size if feature_extractor is not None else None)
    hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=x.shape[0], epochs=args.num_steps, device=args.device,
                  seed=args.seed, progress=not args.quiet, optim=_adam(args.lr))
    return model


def train_sv_dkl(data, args) -> SVDeepKernelGP:
    torch.manual_seed(args.seed)
    x, y = data["x_train"], data["y_train"]
    extractor = mlp([x.shape[1], args.hidden, args.hidden, args.features], activation="tanh")
    with torch.no_grad():
        inducing = extractor(x[torch.randperm(x.shape[0])[:args.num_inducing]])
    model = SVDeepKernelGP(extractor, num_features=args.features, num_data=x.shape[0], inducing_points=inducing)
    hybridpgm.fit(model.objective(), (x, y), batch_size=args.batch_size, max_steps=args.num_steps,
                  device=args.device, seed=args.seed, progress=not args.quiet, optim=_adam(args.lr))
    return model


class GaussianMLP(nn.Module):
    """MLP mean with a learned homoscedastic noise; objective: mean Gaussian NLL."""

    def __init__(self, sizes):
        super().__init__()
        self.net = mlp(sizes, activation="tanh")
        self.log_noise = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x):
        return self.net(x).squeeze(-1), self.log_noise.exp().expand(x.shape[0])


class GaussianNLL:
    """Objective: mean Gaussian negative log-likelihood, one player ``"nll"``."""

    def __init__(self, module: nn.Module):
        self.module = module

    def players(self):
        return {"nll": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        mean, sd = self.module(x)
        return -torch.distributions.Normal(mean, sd).log_prob(y).mean()


def train_mlp(data, args) -> GaussianMLP:
    torch.manual_seed(args.seed)
    x, y = data["x_train"], data["y_train"]
    model = GaussianMLP([x.shape[1], args.hidden, args.hidden, 1])
    hybridpgm.fit(GaussianNLL(model), (x, y), batch_size=args.batch_size, max_steps=args.num_steps,
                  device=args.device, seed=args.seed, progress=not args.quiet, optim=_adam(args.lr))
    return model


def evaluate(models: dict, data) -> dict[str, dict[str, float]]:
    report = {}
    for name, model in models.items():
        device = next(model.parameters()).device
        x, y = data["x_test"].to(device), data["y_test"].to(device)
        if isinstance(model, GaussianMLP):
            model.eval()
            with torch.no_grad():
                mean, sd = model(x)
        else:
            pred = model.predict(x)
            mean, sd = pred.mean, pred.stddev
        report[name] = metrics(mean, sd, y, data["scale"])
    return report


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    data = load(args)
    d = data["x_train"].shape[1]
    torch.manual_seed(args.seed)  # the feature extractor's initial weights too: --seed decides the whole run
    models = {
        "dkl": train_dkl(data, args, mlp([d, args.hidden, args.hidden, args.features], activation="tanh")),
        "exact_gp": train_dkl(data, args, None),
        "mlp": train_mlp(data, args),
    }
    if not args.no_sv:
        models["sv_dkl"] = train_sv_dkl(data, args)
    report = evaluate(models, data)
    for name, values in report.items():
        print(f"{name:9s} " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--dataset", default="synthetic", choices=["synthetic", "diabetes"])
    parser.add_argument("--num-data", type=int, default=800, help="size of the synthetic set")
    parser.add_argument("--num-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128, help="mini-batch of the MLP and SV-DKL")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--grid-size", type=int, default=None, help="KISS-GP grid points per feature for DKL")
    parser.add_argument("--num-inducing", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--no-sv", action="store_true", help="skip SV-DKL")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
