"""``hybridpgm train vae|iwae``: a VAE trained with the ELBO or the IWAE bound.

Trains on the training split (dynamically binarized), then reports on the
statically binarized test split: the ELBO (10 samples from the guide per image,
recorded as ``elbo_samples``) and the importance-sampled
log-likelihood (``--eval-samples`` draws from the guide), beside the
per-pixel Bernoulli baseline fitted to the same training split (each pixel
on with its Laplace-smoothed training mean, :math:`\\hat p_j = (\\sum_n x_{nj}
+ 1) / (N + 2)`), all in nats per image.

The defaults (50 epochs of the digits training split, batch 64, Adam 3e-3, 16 latents,
one hidden layer of 256) train in well under a minute on two CPU cores and
beat that baseline by several nats per image.
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
from hybridpgm.recipes.common import (add_common_arguments, machine_description, positive_int, prepare_output,
                                      recipe_config, save_model, train, write_evaluation, write_metrics)
from hybridpgm.train.distributed import current

__all__ = ["ELBO_SAMPLES", "add_arguments", "bernoulli_baseline", "evaluate", "run", "sample"]

#: samples from the guide per test example of the reported test ELBO (recorded as ``elbo_samples``)
ELBO_SAMPLES = 10

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "final_train_loss": "training loss = -ELBO (IWAE: -bound), nats per example (lower is better)",
    "test_log_likelihood_gain_over_baseline": "nats per example",
    "baseline_test_log_likelihood": "per-pixel Bernoulli baseline, nats per example (higher is better)",
    "eval_samples": "importance samples from the guide per test example (test_log_likelihood)",
}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """The flags of ``hybridpgm train vae|iwae``.  ``--particles`` (the :math:`K` of the IWAE bound) is a flag
    of ``iwae`` only: ``vae`` trains the single-sample ELBO, so ``train vae --particles K`` is refused by the
    parser (before, it was taken, ignored, and recorded in metrics.json as if it had been used).

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=50, batch_size=64, lr=3e-3)
    parser.add_argument("--latent-dim", type=positive_int, default=16, help="latent dimension (default 16)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[256], help="hidden widths (default 256)")
    if model == "iwae":
        parser.add_argument("--particles", type=positive_int, default=5,
                            help="importance samples K of the IWAE bound (default 5)")
    parser.add_argument("--eval-samples", type=positive_int, default=1000,
                        help="importance samples for the test log-likelihood (default 1000)")
    parser.add_argument("--eval-size", type=positive_int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--checkpoint-activations", action="store_true",
                        help="recompute encoder/decoder activations in backward (saves memory)")


def bernoulli_baseline(train_x: torch.Tensor, test_x: torch.Tensor) -> float:
    """Test log-likelihood (nats per image) of independent Bernoulli pixels
    fitted to ``train_x`` (``N x D`` grey levels or bits) with add-one smoothing."""
    p = (train_x.double().sum(0) + 1) / (train_x.shape[0] + 2)
    return float(torch.distributions.Bernoulli(probs=p).log_prob(test_x.double().cpu()).sum(-1).mean())


def _evaluate(vae: VAE, x: torch.Tensor, samples: int, batch: int = 100) -> tuple[float, float]:
    vae.eval()
    elbo, ll = [], []
    for chunk in x.split(batch):
        elbo.append(vae.elbo(chunk, num_samples=ELBO_SAMPLES))
        ll.append(vae.log_likelihood(chunk, num_samples=samples))
    return float(torch.cat(elbo).mean()), float(torch.cat(ll).mean())


def _plots(vae: VAE, test: torch.Tensor, image_shape, out: Path) -> None:
    plot_image_grid(vae.sample(64).cpu(), image_shape, out / "samples.png", title="samples (means)")
    originals = test[:32]
    pairs = torch.stack([originals, vae.reconstruct(originals)], dim=1).reshape(-1, originals.shape[-1])
    plot_image_grid(pairs.cpu(), image_shape, out / "reconstructions.png", title="test image | reconstruction",
                    columns=8)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    out = prepare_output(args, f"runs/{args.model}-{args.dataset}")
    data = load_dataset(args.dataset, binarize="dynamic", root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    vae = VAE(data.num_features, args.latent_dim, args.hidden, checkpoint_activations=args.checkpoint_activations)
    elbo = IWAE(args.particles) if args.model == "iwae" else None  # vae: the single-sample ELBO
    objective = SVIObjective(vae.model, vae.guide, elbo)
    # --checkpoint-activations recomputes the same activations (memory, not maths); --eval-* change the report
    config = recipe_config(args, reporting=("eval_samples", "eval_size", "checkpoint_activations"))
    result, train_seconds, examples_per_s = train(objective, training_data(data), args, out, config=config)
    if not context.is_main:
        return {}
    test = data.test.x[: args.eval_size].to(result.device)
    test_elbo, test_ll = _evaluate(vae, test, args.eval_samples)
    baseline = bernoulli_baseline(data.train.x, test)
    bound = f"-L_{objective.elbo.num_particles} (negative IWAE bound)" if args.model == "iwae" else "-ELBO"
    plot_loss_curves(result.history, out / "loss.png", title=f"{args.model} on {args.dataset}",
                     labels={"elbo": f"loss = {bound}, nats per example"})
    _plots(vae, test, data.image_shape, out)
    save_model(vae.cpu(), out, args, feature_shape=[data.num_features], image_shape=list(data.image_shape),
               eval_samples=args.eval_samples, eval_size=args.eval_size)
    final_loss = result.history.loss["elbo"][-1] if result.history.step else None
    metrics = {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs, "steps": result.steps,
        "batch_size": args.batch_size, "accumulate": args.accumulate, "lr": args.lr,
        "precision": args.precision or "fp32", "particles": objective.elbo.num_particles,  # the K trained with
        "latent_dim": args.latent_dim,
        "hidden": args.hidden, "seed": args.seed, "device": str(result.device), "world_size": context.world_size,
        "final_train_loss": final_loss,
        "test_elbo": test_elbo,
        "test_log_likelihood": test_ll,
        "baseline_test_log_likelihood": baseline,
        "test_log_likelihood_gain_over_baseline": test_ll - baseline,
        "eval_samples": args.eval_samples, "elbo_samples": ELBO_SAMPLES, "test_size": int(test.shape[0]),
        "train_wall_time_s": train_seconds, "train_examples_per_s": examples_per_s,
        "machine": machine_description(),
    }
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def _test_split(saved) -> torch.Tensor:
    meta = saved.meta
    data = load_dataset(meta["dataset"], binarize="dynamic", root=meta.get("data_root"), seed=meta["seed"])
    return data, data.test.x[: meta.get("eval_size")]


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: the test figures again, from ``RUN/model.pt``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    data, test = _test_split(saved)
    test_elbo, test_ll = _evaluate(saved.module, test, saved.meta["eval_samples"])
    baseline = bernoulli_baseline(data.train.x, test)
    report = {"model": saved.meta["recipe"], "dataset": saved.meta["dataset"], "test_elbo": test_elbo,
              "test_log_likelihood": test_ll, "baseline_test_log_likelihood": baseline,
              "eval_samples": saved.meta["eval_samples"], "elbo_samples": ELBO_SAMPLES, "test_size": int(test.shape[0])}
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: a grid of decoder means to ``RUN/samples-seed<S>.png``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.png")
    images = saved.module.sample(args.num_samples).cpu()
    plot_image_grid(images, tuple(saved.meta["image_shape"]), path, title="samples (means)")
    return {"samples": str(path), "num_samples": args.num_samples}
