"""``hybridpgm train sbn``: a sigmoid belief net trained by wake-sleep, RWS, NVIL or VIMCO.

Trains on the training split (dynamically binarized) with ``--objective``, then
reports the importance-sampled test log-likelihood (``--eval-samples`` draws
from the recognition network) on the statically binarized test split, and
plots dreams and loss curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset, training_data
from hybridpgm.diagnostics import plot_image_grid, plot_loss_curves
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import NVIL, RWS, VIMCO, WakeSleep
from hybridpgm.recipes.common import add_common_arguments, machine_description, train, write_metrics
from hybridpgm.train.distributed import current

__all__ = ["OBJECTIVES", "add_arguments", "run"]

#: ``--objective`` name -> builder ``(sbn, particles) -> objective``
OBJECTIVES = {
    "wake-sleep": lambda sbn, k: WakeSleep(sbn.model, sbn.guide, max_plate_nesting=1),
    "rws": lambda sbn, k: RWS(sbn.model, sbn.guide, num_particles=k, max_plate_nesting=1),
    "nvil": lambda sbn, k: NVIL(sbn.model, sbn.guide, max_plate_nesting=1),
    "vimco": lambda sbn, k: VIMCO(sbn.model, sbn.guide, num_particles=max(k, 2), max_plate_nesting=1),
}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    add_common_arguments(parser, epochs=10, batch_size=100)
    parser.add_argument("--objective", default="rws", choices=sorted(OBJECTIVES),
                        help="training objective (default rws)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 200],
                        help="hidden layer sizes, bottom-up (default 200 200)")
    parser.add_argument("--particles", type=int, default=5, help="K for RWS and VIMCO (default 5)")
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="importance samples for the test log-likelihood (default 1000)")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluate on the first N test images")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics."""
    context = current()
    out = Path(args.out or f"runs/sbn-{args.objective}-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, binarize="dynamic", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    sbn = SigmoidBeliefNet([data.num_features, *args.hidden])
    objective = OBJECTIVES[args.objective](sbn, args.particles)
    result, train_seconds = train(objective, training_data(data), args, out)
    if not context.is_main:
        return {}
    sbn.eval()
    test = data.test.x[: args.eval_size].to(result.device)
    test_ll = float(torch.cat([sbn.log_likelihood(chunk, num_samples=args.eval_samples)
                               for chunk in test.split(100)]).mean())
    plot_loss_curves(result.history, out / "loss.png", title=f"SBN ({args.objective}) on {args.dataset}")
    plot_image_grid(sbn.sample(64).cpu(), data.image_shape, out / "samples.png", title="dreams")
    metrics = {
        "model": "sbn",
        "objective": args.objective,
        "dataset": args.dataset,
        "layer_sizes": sbn.layer_sizes,
        "epochs": args.epochs,
        "steps": result.steps,
        "batch_size": args.batch_size,
        "accumulate": args.accumulate,
        "particles": args.particles,
        "seed": args.seed,
        "device": str(result.device),
        "world_size": context.world_size,
        "final_train_loss": {p: v[-1] for p, v in result.history.loss.items()},
        "test_log_likelihood": test_ll,
        "eval_samples": args.eval_samples,
        "test_size": int(test.shape[0]),
        "train_wall_time_s": train_seconds,
        "machine": machine_description(),
    }
    write_metrics(out, metrics)
    return metrics
