"""``hybridpgm train vae|iwae``: a VAE trained with the ELBO or the IWAE bound.

Trains on the training split (dynamically binarized), then reports on the
statically binarized test split: the ELBO and the importance-sampled
log-likelihood (``--eval-samples`` draws from the guide).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset, training_data
from hybridpgm.diagnostics import plot_image_grid, plot_loss_curves
from hybridpgm.generative import VAE
from hybridpgm.infer import IWAE, SVIObjective
from hybridpgm.recipes.common import add_common_arguments, machine_description, train, write_metrics
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    add_common_arguments(parser, epochs=10, batch_size=128)
    parser.add_argument("--latent-dim", type=int, default=50, help="latent dimension (default 50)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[400], help="hidden widths (default 400)")
    parser.add_argument("--particles", type=int, default=5 if model == "iwae" else 1,
                        help="importance samples K of the IWAE bound (default 5 for iwae; 1 for vae)")
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="importance samples for the test log-likelihood (default 1000)")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--checkpoint-activations", action="store_true",
                        help="recompute encoder/decoder activations in backward (saves memory)")


def _evaluate(vae: VAE, x: torch.Tensor, samples: int, batch: int = 100) -> tuple[float, float]:
    vae.eval()
    elbo, ll = [], []
    for chunk in x.split(batch):
        elbo.append(vae.elbo(chunk, num_samples=10))
        ll.append(vae.log_likelihood(chunk, num_samples=samples))
    return float(torch.cat(elbo).mean()), float(torch.cat(ll).mean())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics."""
    context = current()
    out = Path(args.out or f"runs/{args.model}-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, binarize="dynamic", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    vae = VAE(data.num_features, args.latent_dim, args.hidden, checkpoint_activations=args.checkpoint_activations)
    elbo = IWAE(args.particles) if args.model == "iwae" else None
    objective = SVIObjective(vae.model, vae.guide, elbo)
    result, train_seconds = train(objective, training_data(data), args, out)
    if not context.is_main:
        return {}
    test = data.test.x[: args.eval_size].to(result.device)
    test_elbo, test_ll = _evaluate(vae, test, args.eval_samples)
    plot_loss_curves(result.history, out / "loss.png", title=f"{args.model} on {args.dataset}")
    plot_image_grid(vae.sample(64).cpu(), data.image_shape, out / "samples.png", title="samples (means)")
    originals = test[:32]
    pairs = torch.stack([originals, vae.reconstruct(originals)], dim=1).reshape(-1, data.num_features)
    plot_image_grid(pairs.cpu(), data.image_shape, out / "reconstructions.png",
                    title="test image | reconstruction", columns=8)
    metrics = {
        "model": args.model,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "steps": result.steps,
        "batch_size": args.batch_size,
        "accumulate": args.accumulate,
        "precision": args.precision or "fp32",
        "particles": args.particles,
        "latent_dim": args.latent_dim,
        "hidden": args.hidden,
        "seed": args.seed,
        "device": str(result.device),
        "world_size": context.world_size,
        "final_train_loss": result.history.loss["elbo"][-1] if result.history.step else None,
        "test_elbo": test_elbo,
        "test_log_likelihood": test_ll,
        "eval_samples": args.eval_samples,
        "test_size": int(test.shape[0]),
        "train_wall_time_s": train_seconds,
        "train_examples_per_s": sum(result.history.examples_per_second) / max(len(result.history.step), 1),
        "machine": machine_description(),
    }
    write_metrics(out, metrics)
    return metrics
