"""``hybridpgm train rbm``: a binary RBM trained by CD-k or PCD, scored by AIS.

Trains on the statically binarized training split with SGD and momentum
(Hinton's practical guide), estimates :math:`\\log Z` by annealed importance
sampling from two starts (the data's base rates and the model's own Gibbs
samples, :func:`~hybridpgm.infer.log_z.estimate_log_z`), and reports the test
log-likelihood with the standard error, the spread between the starts and
whether the estimate is reliable.  Every ``--eval-every`` steps it monitors the
validation split (reconstruction error, pseudo-log-likelihood); a data set
without one (a small Fashion-MNIST copy, all of it training data) is not
monitored.
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
from hybridpgm.errors import ConfigError
from hybridpgm.infer import ContrastiveDivergence, PersistentCD
from hybridpgm.infer.log_z import estimate_log_z
from hybridpgm.recipes.common import (add_common_arguments, machine_description, non_negative_float, positive_int,
                                      prepare_output, recipe_config, save_model, train, write_metrics,
                                      write_evaluation)
from hybridpgm.train import EvaluateEvery
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "evaluate", "persistent_chains", "run", "sample"]

#: ``--chains`` of ``--persistent`` when not given
DEFAULT_CHAINS = 100

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "validation": {
        "reconstruction_error": "squared error ||v - E[v | h = E[h | v]]||^2 per example (a monitor, lower is "
                                "better)",
        "pseudo_log_likelihood": "nats per example (one flipped unit per example, times the visible units; higher "
                                 "is better)"},
}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=10, batch_size=100, lr=0.05, optimizer="SGD (with --momentum)")
    parser.add_argument("--hidden", type=positive_int, default=100, help="hidden units (default 100)")
    parser.add_argument("--k", type=positive_int, default=1, help="Gibbs sweeps per step (default 1)")
    parser.add_argument("--persistent", action="store_true", help="persistent chains (PCD) instead of CD-k")
    parser.add_argument("--chains", type=positive_int, default=None,
                        help=f"persistent chains of --persistent (default {DEFAULT_CHAINS}); CD-k takes none")
    parser.add_argument("--momentum", type=non_negative_float, default=0.5, help="SGD momentum (default 0.5)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="L2 weight decay (default 1e-4)")
    parser.add_argument("--ais-chains", type=positive_int, default=100, help="AIS chains (default 100)")
    parser.add_argument("--ais-steps", type=positive_int, default=10000, help="AIS temperatures (default 10000)")
    parser.add_argument("--eval-every", type=positive_int, default=200, help="steps between validation monitors")


def persistent_chains(args: argparse.Namespace) -> int | None:
    """The persistent chains PCD runs (``--chains``, default :data:`DEFAULT_CHAINS`), ``None`` for CD-k.

    :raises ConfigError: ``--chains`` without ``--persistent`` (CD-k starts its chains at the data, so the
        option would be ignored).
    """
    if not args.persistent:
        if args.chains is not None:
            raise ConfigError("--chains sets the persistent chains of --persistent (PCD); CD-k starts each step's "
                              "chains at the batch (add --persistent, or leave --chains out)")
        return None
    return DEFAULT_CHAINS if args.chains is None else args.chains


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, estimate log Z, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    chains = persistent_chains(args)  # before anything is written
    out = prepare_output(args, f"runs/rbm-{args.dataset}")
    data = load_dataset(args.dataset, binarize="static", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    rbm = RBM(data.num_features, args.hidden)
    objective = PersistentCD(rbm, args.k, chains) if args.persistent else ContrastiveDivergence(rbm, args.k)
    optim = functools.partial(torch.optim.SGD, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    # a small data set (a Fashion-MNIST copy of <= 10,000 training images) trains on all of it and has an empty
    # validation split: there is nothing to monitor then, and "validation" in the report stays empty
    callbacks = () if data.valid.x.shape[0] == 0 else (
        EvaluateEvery(args.eval_every, lambda o: o.monitor(data.valid.x.to(next(rbm.parameters()).device))),)
    # the AIS estimate and the validation monitor change the report, not the run
    config = recipe_config(args, reporting=("ais_chains", "ais_steps", "eval_every"), chains=chains)
    result, train_seconds, examples_per_s = train(objective, data.train.x, args, out, optim=optim,
                                                  callbacks=callbacks, config=config)
    if not context.is_main:
        return {}
    with torch.no_grad():
        estimate = estimate_log_z(rbm, data.train.x.to(result.device), num_chains=args.ais_chains,
                                  num_steps=args.ais_steps, warn=False)
        ais = estimate.starts[estimate.best_start]
        test_ll = rbm.log_likelihood(data.test.x.to(result.device), estimate.log_z).mean().item()
        samples = rbm.sample(64, steps=1000).cpu()
    plot_loss_curves(result.history, out / "loss.png", title=f"rbm on {args.dataset}")
    plot_image_grid(samples, data.image_shape, out / "samples.png", title="Gibbs samples")
    plot_log_weights(ais.log_weights.cpu(), out / "ais_weights.png", title="AIS log-weights")
    save_model(rbm.cpu(), out, args, feature_shape=[data.num_features], image_shape=list(data.image_shape),
               ais_chains=args.ais_chains, ais_steps=args.ais_steps)
    metrics = {
        "model": "rbm", "dataset": args.dataset, "objective": f"{'PCD' if args.persistent else 'CD'}-{args.k}",
        "hidden": args.hidden, "epochs": args.epochs, "steps": result.steps, "batch_size": args.batch_size,
        **({"chains": chains} if args.persistent else {}), "seed": args.seed,
        "precision": args.precision or "fp32", "device": str(result.device), "world_size": context.world_size,
        "log_z": float(estimate.log_z), "log_z_stderr": float(estimate.stderr), "ais_ess": ais.ess,
        "log_z_reliable": estimate.reliable, "log_z_reasons": estimate.reasons,
        "log_z_starts": estimate.to_dict()["starts"],
        "test_log_likelihood": test_ll, "validation": {k: v[-1][1] for k, v in result.history.metrics.items()},
        "lr": args.lr, "optimizer": "SGD", "momentum": args.momentum, "weight_decay": args.weight_decay,
        "train_wall_time_s": train_seconds, "train_examples_per_s": examples_per_s, "machine": machine_description(),
    }
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: a fresh AIS estimate of log Z and the test log-likelihood.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    meta, rbm = saved.meta, saved.module
    data = load_dataset(meta["dataset"], binarize="static", root=meta.get("data_root"), seed=meta["seed"])
    with torch.no_grad():
        estimate = estimate_log_z(rbm, data.train.x, num_chains=meta["ais_chains"], num_steps=meta["ais_steps"],
                                  warn=False)
        test_ll = rbm.log_likelihood(data.test.x, estimate.log_z).mean().item()
    report = {"model": "rbm", "dataset": meta["dataset"], "log_z": float(estimate.log_z),
              "log_z_stderr": float(estimate.stderr), "log_z_reliable": estimate.reliable,
              "log_z_reasons": estimate.reasons, "test_log_likelihood": test_ll,
              "ais_chains": meta["ais_chains"], "ais_steps": meta["ais_steps"]}  # the run's, or those passed
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: Gibbs samples (1,000 sweeps) to ``RUN/samples-seed<S>.png``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.png")
    with torch.no_grad():
        images = saved.module.sample(args.num_samples, steps=1000).cpu()
    plot_image_grid(images, tuple(saved.meta["image_shape"]), path, title="Gibbs samples")
    return {"samples": str(path), "num_samples": args.num_samples}
