"""``hybridpgm train rbm``: a binary RBM trained by CD-k or PCD, scored by AIS.

Trains on the statically binarized training split with SGD and momentum
(Hinton's practical guide), estimates :math:`\\log Z` by annealed importance
sampling from the data's base-rate model, and reports the test
log-likelihood with the AIS standard error and effective sample size.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset
from hybridpgm.diagnostics import plot_image_grid, plot_log_weights, plot_loss_curves
from hybridpgm.energy import RBM
from hybridpgm.infer import AIS, ContrastiveDivergence, PersistentCD
from hybridpgm.recipes.common import add_common_arguments, machine_description, train, write_metrics
from hybridpgm.train import EvaluateEvery
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    add_common_arguments(parser, epochs=10, batch_size=100)
    parser.set_defaults(lr=0.05)
    parser.add_argument("--hidden", type=int, default=100, help="hidden units (default 100)")
    parser.add_argument("--k", type=int, default=1, help="Gibbs sweeps per step (default 1)")
    parser.add_argument("--persistent", action="store_true", help="persistent chains (PCD) instead of CD-k")
    parser.add_argument("--chains", type=int, default=100, help="persistent chains (default 100)")
    parser.add_argument("--momentum", type=float, default=0.5, help="SGD momentum (default 0.5)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay (default 1e-4)")
    parser.add_argument("--ais-chains", type=int, default=100, help="AIS chains (default 100)")
    parser.add_argument("--ais-steps", type=int, default=10000, help="AIS temperatures (default 10000)")
    parser.add_argument("--eval-every", type=int, default=200, help="steps between validation monitors")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, estimate log Z, write the report; return the metrics."""
    context = current()
    out = Path(args.out or f"runs/rbm-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, binarize="static", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    rbm = RBM(data.num_features, args.hidden)
    objective = PersistentCD(rbm, args.k, args.chains) if args.persistent else ContrastiveDivergence(rbm, args.k)
    optim = functools.partial(torch.optim.SGD, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    monitor = EvaluateEvery(args.eval_every, lambda o: o.monitor(data.valid.x.to(next(rbm.parameters()).device)))
    result, train_seconds = train(objective, data.train.x, args, out, optim=optim, callbacks=(monitor,))
    if not context.is_main:
        return {}
    with torch.no_grad():
        ais = AIS(num_chains=args.ais_chains, num_steps=args.ais_steps)(rbm, data=data.train.x.to(result.device))
        test_ll = rbm.log_likelihood(data.test.x.to(result.device), ais.log_z).mean().item()
        samples = rbm.sample(64, steps=1000).cpu()
    plot_loss_curves(result.history, out / "loss.png", title=f"rbm on {args.dataset}")
    plot_image_grid(samples, data.image_shape, out / "samples.png", title="Gibbs samples")
    plot_log_weights(ais.log_weights.cpu(), out / "ais_weights.png", title="AIS log-weights")
    metrics = {
        "model": "rbm", "dataset": args.dataset, "objective": f"{'PCD' if args.persistent else 'CD'}-{args.k}",
        "hidden": args.hidden, "epochs": args.epochs, "steps": result.steps, "batch_size": args.batch_size,
        "seed": args.seed, "device": str(result.device), "world_size": context.world_size,
        "log_z": float(ais.log_z), "log_z_stderr": float(ais.stderr), "ais_ess": ais.ess,
        "test_log_likelihood": test_ll, "validation": {k: v[-1][1] for k, v in result.history.metrics.items()},
        "train_wall_time_s": train_seconds, "machine": machine_description(),
    }
    write_metrics(out, metrics)
    return metrics
