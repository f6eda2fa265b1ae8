"""``hybridpgm train gan|iwgan|infogan|aavae``: the GAN family as variational EM (Hu et al. 2018).

Trains on the training split (grey levels in [0, 1]; AAVAE on the statically
binarized images), players ``"discriminator"`` then ``"generator"``, Adam
with :math:`\\beta_1 = 0.5`.  Reports the classifier-based inception score of
``--eval-samples`` samples (default 2,000; the reference classifier is an MLP trained for
``--classifier-steps`` steps on the real training images with the same seed; metrics.json and
evaluation.json record both), InfoGAN's unsupervised clustering accuracy of its categorical code on the test
split, and AAVAE's test ELBO (10 samples from the guide per image, recorded as ``elbo_samples``).

The run folder holds ``model.pt``: the generator (the VAE for AAVAE), which
``hybridpgm sample RUN`` draws from; InfoGAN adds ``code_posterior.pt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from hybridpgm.data import load_dataset
from hybridpgm.diagnostics import plot_image_grid, plot_loss_curves
from hybridpgm.diagnostics.gan_metrics import clustering_accuracy, inception_score, train_classifier
from hybridpgm.errors import ConfigError
from hybridpgm.generative import VAE
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator, gan_networks
from hybridpgm.infer.adversarial import AAVAE, GAN, IWGAN, InfoGAN, adversarial_optim
from hybridpgm.recipes.common import (add_common_arguments, machine_description, non_negative_float, positive_int,
                                      prepare_output, recipe_config, save_model, train, write_metrics,
                                      write_evaluation)
from hybridpgm.train.distributed import current

__all__ = ["add_arguments", "build", "evaluate", "run", "sample"]

NUM_CONTINUOUS = 2

#: ``--hidden`` when not given (the MLP networks' widths)
DEFAULT_HIDDEN = [128, 128]

#: samples from the guide per test image of AAVAE's test ELBO (recorded as ``elbo_samples``)
ELBO_SAMPLES = 10

#: units of the figures of this recipe's metrics.json and evaluation.json (beside :data:`~.common.UNITS`)
_UNITS = {
    "inception_score": "exp(mean KL(p(c|x) || p(c))) of the reference classifier, in [1, 10]",
    "real_test_inception_score": "the same score of the real test images (the ceiling)",
    "cluster_accuracy": "fraction of test images whose code maps to their label (best one-to-one map)",
    "eval_samples": "generated samples scored by the inception score",
    "classifier_steps": "training steps of the reference classifier",
}


def add_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """Add the recipe's options to ``parser``.

    :param parser: the ``hybridpgm train <model>`` subcommand's :class:`argparse.ArgumentParser`.
    :param str model: the model name it runs as (a key of :data:`~hybridpgm.recipes.RECIPES`)."""
    add_common_arguments(parser, model, epochs=30, batch_size=128, lr=1e-3, optimizer="Adam (beta1 0.5)")
    parser.add_argument("--noise-dim", type=positive_int, default=16, help="generator noise dimension (default 16)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=None,
                        help="hidden widths of the MLP networks (default 128 128)"
                             + ("; not taken by --arch conv" if model in ("gan", "iwgan") else ""))
    parser.add_argument("--k", type=positive_int, default=1, help="discriminator steps per generator step")
    if model in ("gan", "iwgan"):
        parser.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="network kind (default mlp)")
    if model == "iwgan":
        parser.add_argument("--importance-samples", type=positive_int, default=4,
                            help="IWGAN importance samples (default 4)")
    if model == "aavae":
        parser.add_argument("--latent-dim", type=positive_int, default=16, help="VAE latent dimension (default 16)")
        parser.add_argument("--fake-weight", type=non_negative_float, default=1.0,
                            help="weight of the model samples' term (default 1)")
        parser.add_argument("--unnormalized-weights", action="store_true",
                            help="keep the discriminator's weights as they are rather than dividing them by their "
                                 "batch mean; needed with --accumulate > 1 or several ranks, which need a loss "
                                 "that is a sum over rows")
    parser.add_argument("--eval-samples", type=positive_int, default=2000,
                        help="samples scored by the inception score (default 2000)")
    parser.add_argument("--classifier-steps", type=positive_int, default=500,
                        help="training steps of the reference classifier (default 500)")


def hidden_widths(args: argparse.Namespace) -> list[int] | None:
    """The MLP widths the networks are built with (``--hidden``, default 128 128), or ``None`` for
    ``--arch conv``, whose networks have no such widths.

    :raises ConfigError: ``--hidden`` given with ``--arch conv`` (it would be ignored).
    """
    if getattr(args, "arch", "mlp") == "conv":
        if args.hidden is not None:
            raise ConfigError("--hidden sets the widths of the MLP networks; --arch conv builds convolutional "
                              "ones that do not take it (leave --hidden out, or use --arch mlp)")
        return None
    return list(DEFAULT_HIDDEN if args.hidden is None else args.hidden)


def build(args: argparse.Namespace, dim: int, image_shape) -> Any:
    """The objective of ``args.model`` for ``dim``-pixel images."""
    widths = hidden_widths(args)
    hidden = tuple(widths) if widths is not None else tuple(DEFAULT_HIDDEN)  # conv: not used
    if args.model in ("gan", "iwgan"):
        gen, disc = gan_networks(args.arch, dim, args.noise_dim, hidden, image_shape=image_shape,
                                 out_activation="sigmoid")
        if args.model == "gan":
            return GAN(gen, disc, k=args.k)
        return IWGAN(gen, disc, num_samples=args.importance_samples, k=args.k)
    if args.model == "infogan":
        gen = MLPGenerator(args.noise_dim + 10 + NUM_CONTINUOUS, dim, hidden, out_activation="sigmoid")
        return InfoGAN(gen, MLPDiscriminator(dim, hidden), MLPDiscriminator(dim, hidden, out_dim=10 + NUM_CONTINUOUS),
                       num_categories=10, num_continuous=NUM_CONTINUOUS, k=args.k)
    vae = VAE(dim, args.latent_dim, list(hidden))
    return AAVAE(vae, MLPDiscriminator(dim, hidden), k=args.k, fake_weight=args.fake_weight,
                 normalize_weights=not args.unnormalized_weights)


def _samples(objective, n: int) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(objective, AAVAE):
            objective.vae.eval()
            return objective.vae.sample(n, mean=True)
        objective.module.eval()
        return objective.sample(n)


def _scores(samples: torch.Tensor, data, seed: int, classifier_steps: int) -> dict[str, float]:
    classifier = train_classifier(data.train.x, data.train.y, num_steps=classifier_steps, seed=seed, device="cpu")
    return {"inception_score": inception_score(classifier, samples.cpu()),
            "real_test_inception_score": inception_score(classifier, data.test.x),
            "eval_samples": int(samples.shape[0]), "classifier_steps": classifier_steps}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, score, write the report; return the metrics.

    :param args: the parsed command line (the options of :func:`add_arguments`)."""
    context = current()
    hidden = hidden_widths(args)  # before anything is written
    out = prepare_output(args, f"runs/{args.model}-{args.dataset}")
    binarize = "static" if args.model == "aavae" else None
    data = load_dataset(args.dataset, binarize=binarize, root=args.data_root, seed=args.seed)
    torch.manual_seed(args.seed)
    objective = build(args, data.num_features, data.image_shape)
    # the inception score's sample count and classifier change the report, not the run
    config = recipe_config(args, reporting=("eval_samples", "classifier_steps"), hidden=hidden)
    result, train_seconds, examples_per_s = train(objective, data.train.x, args, out, optim=adversarial_optim(args.lr),
                                                  config=config)
    if not context.is_main:
        return {}
    samples = _samples(objective, args.eval_samples).cpu()
    report = _scores(samples, load_dataset(args.dataset, root=args.data_root, seed=args.seed), args.seed,
                     args.classifier_steps)
    meta = dict(feature_shape=[data.num_features], image_shape=list(data.image_shape),
                eval_samples=args.eval_samples, classifier_steps=args.classifier_steps)
    if isinstance(objective, InfoGAN):
        probs, _ = objective.infer_codes(data.test.x.to(result.device))
        report["cluster_accuracy"] = clustering_accuracy(probs.argmax(-1).cpu(), data.test.y)
        meta.update(num_categories=10, num_continuous=NUM_CONTINUOUS)
        from hybridpgm.serialization import save

        save(objective.module["code_posterior"].cpu(), out / "code_posterior.pt")
    if isinstance(objective, AAVAE):
        report["test_elbo"] = objective.vae.elbo(data.test.x.to(result.device),
                                                 num_samples=ELBO_SAMPLES).mean().item()
        report["elbo_samples"] = ELBO_SAMPLES
    model = objective.vae if isinstance(objective, AAVAE) else objective.generator
    save_model(model.cpu(), out, args, **meta)
    plot_loss_curves(result.history, out / "loss.png", title=f"{args.model} on {args.dataset}")
    plot_image_grid(samples[:64], data.image_shape, out / "samples.png", title=f"{args.model} samples")
    metrics = {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs, "steps": result.steps,
        "batch_size": args.batch_size, "lr": args.lr, "k": args.k, "arch": getattr(args, "arch", "mlp"),
        "hidden": hidden, "noise_dim": args.noise_dim, "seed": args.seed, "precision": args.precision or "fp32",
        "device": str(result.device), "world_size": context.world_size,
        "final_train_loss": {p: v[-1] for p, v in result.history.loss.items()}, **report,
        "train_wall_time_s": train_seconds, "train_examples_per_s": examples_per_s,
        "machine": machine_description(),
    }
    metrics.update({k: getattr(args, k) for k in ("importance_samples", "latent_dim", "fake_weight",
                                                  "unnormalized_weights") if hasattr(args, k)})
    write_metrics(out, metrics, units=_UNITS)
    return metrics


def _draw(saved, n: int) -> torch.Tensor:
    module, meta = saved.module, saved.meta
    with torch.no_grad():
        if isinstance(module, VAE):
            return module.sample(n, mean=True)
        if "num_categories" in meta:
            noise = module.noise_dim - meta["num_categories"] - meta["num_continuous"]
            cat = torch.nn.functional.one_hot(torch.randint(meta["num_categories"], (n,)), meta["num_categories"])
            codes = [torch.randn(n, noise), cat.float(), torch.rand(n, meta["num_continuous"]) * 2 - 1]
            return module(torch.cat(codes, -1))
        return module(torch.randn(n, module.noise_dim))


def evaluate(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm evaluate RUN``: the inception score of fresh samples (and AAVAE's test ELBO).

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm evaluate`` command line."""
    meta = saved.meta
    data = load_dataset(meta["dataset"], root=meta.get("data_root"), seed=meta["seed"])
    report = {"model": meta["recipe"], "dataset": meta["dataset"],
              **_scores(_draw(saved, meta["eval_samples"]), data, meta["seed"], meta["classifier_steps"])}
    if isinstance(saved.module, VAE):
        static = load_dataset(meta["dataset"], binarize="static", root=meta.get("data_root"), seed=meta["seed"])
        report["test_elbo"] = saved.module.elbo(static.test.x, num_samples=ELBO_SAMPLES).mean().item()
        report["elbo_samples"] = ELBO_SAMPLES
    write_evaluation(report, run_dir, args, units=_UNITS)
    return report


def sample(saved, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``hybridpgm sample RUN``: generator samples to ``RUN/samples-seed<S>.png``.

    :param saved: the run's :class:`~hybridpgm.serialization.SavedModel` (``RUN/model.pt``).
    :param run_dir: the run folder ``RUN``.
    :param args: the parsed ``hybridpgm sample`` command line."""
    path = Path(args.output or run_dir / f"samples-seed{args.seed}.png")
    plot_image_grid(_draw(saved, args.num_samples).cpu(), tuple(saved.meta["image_shape"]), path,
                    title=f"{saved.meta['recipe']} samples")
    return {"samples": str(path), "num_samples": args.num_samples}
