"""The GAN family as variational EM: GAN, IWGAN, InfoGAN and AAVAE on the ring
of 8 Gaussians and on the 8x8 digits.

Shows: every variant is an objective of :func:`hybridpgm.fit` with players
``"discriminator"`` (``k`` steps) and ``"generator"``, written through the
discriminator :math:`q_\\phi(y|x)` and its reversal :math:`q^r_\\phi(y|x)`; and
the metrics of :mod:`hybridpgm.diagnostics.gan_metrics`: mode coverage and
high-quality rate on the ring, a classifier-based inception score on digits
(the classifier trained here on the real digits), InfoGAN's unsupervised
clustering accuracy, AAVAE's test ELBO.

Paper: Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep
Generative Models*, ICLR 2018 (and the papers of each variant, cited in
:mod:`hybridpgm.infer.adversarial`).

    python examples/gan_family.py --gan --iwgan --dataset ring --num-steps 2000
    python examples/gan_family.py --infogan --dataset digits --num-steps 1500
"""

from __future__ import annotations

import argparse

import torch

import hybridpgm
from hybridpgm.data import load_dataset, training_data
from hybridpgm.data.toy import ring_of_gaussians
from hybridpgm.diagnostics.gan_metrics import clustering_accuracy, inception_score, ring_coverage, train_classifier
from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator, gan_networks
from hybridpgm.infer.adversarial import AAVAE, GAN, IWGAN, InfoGAN, adversarial_optim
from hybridpgm.recipes.common import seed_int

VARIANTS = ("gan", "iwgan", "infogan", "aavae")
NUM_CONTINUOUS = 2


def build(variant: str, dataset: str, args: argparse.Namespace):
    """The objective of ``variant`` for ``dataset`` ("ring" or "digits")."""
    dim = 2 if dataset == "ring" else 64
    hidden = (args.hidden,) * 2
    out = None if dataset == "ring" else "sigmoid"
    if variant in ("gan", "iwgan"):
        kind = "mlp" if dataset == "ring" else args.arch
        gen, disc = gan_networks(kind, dim, args.noise_dim, hidden, image_shape=(8, 8), out_activation=out)
        if variant == "gan":
            return GAN(gen, disc, k=args.k)
        return IWGAN(gen, disc, num_samples=args.num_samples, k=args.k)
    if variant == "infogan":
        cats = 8 if dataset == "ring" else 10
        gen = MLPGenerator(args.noise_dim + cats + NUM_CONTINUOUS, dim, hidden, out_activation=out)
        return InfoGAN(gen, MLPDiscriminator(dim, hidden), MLPDiscriminator(dim, hidden, out_dim=cats + NUM_CONTINUOUS),
                       num_categories=cats, num_continuous=NUM_CONTINUOUS, k=args.k)
    if variant == "aavae":
        likelihood = "gaussian" if dataset == "ring" else "bernoulli"
        vae = hybridpgm.VAE(dim, z_dim=2 if dataset == "ring" else 16, hidden=hidden, likelihood=likelihood)
        return AAVAE(vae, MLPDiscriminator(dim, hidden), k=args.k, fake_weight=args.fake_weight)
    raise ValueError(f"unknown variant {variant!r}")


def data_for(variant: str, dataset: str, seed: int, train_fraction: float = 1.0):
    """``(train tensor, test split or None)``; AAVAE on digits trains on statically binarized digits."""
    if dataset == "ring":
        return ring_of_gaussians(20000, generator=torch.Generator().manual_seed(seed)), None
    data = load_dataset("digits", binarize="static" if variant == "aavae" else None, seed=seed)
    x = training_data(data)
    n = max(1, int(round(train_fraction * x.shape[0])))
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]], data.test


def samples_of(objective, n: int) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(objective, AAVAE):
            return objective.vae.sample(n, mean=True)
        objective.module.eval()
        try:
            return objective.sample(n)
        finally:
            objective.module.train()


def evaluate(objective, dataset: str, test, classifier=None, num_samples: int = 2500) -> dict[str, float]:
    samples = samples_of(objective, num_samples).cpu()
    report: dict[str, float] = {}
    if dataset == "ring":
        cov = ring_coverage(samples)
        report.update(modes=cov.modes_covered, high_quality=cov.high_quality_rate)
    else:
        if classifier is not None:
            report["inception_score"] = inception_score(classifier, samples)
        device = next(objective.module.parameters()).device
        if isinstance(objective, InfoGAN):
            probs, _ = objective.infer_codes(test.x.to(device))
            report["cluster_accuracy"] = clustering_accuracy(probs.argmax(-1), test.y)
        if isinstance(objective, AAVAE):
            objective.vae.eval()
            report["test_elbo"] = objective.vae.elbo(test.x.to(device), num_samples=10).mean().item()
    return report


def train(objective, x, args: argparse.Namespace):
    return hybridpgm.fit(objective, x, batch_size=args.batch_size, max_steps=args.num_steps,
                         device=args.device, seed=args.seed, optim=adversarial_optim(args.lr),
                         progress=not args.quiet)


def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    variants = [v for v in VARIANTS if getattr(args, v)] or list(VARIANTS)
    datasets = ["ring", "digits"] if args.dataset == "both" else [args.dataset]
    classifier = None
    if "digits" in datasets:
        digits = load_dataset("digits", seed=args.seed)
        classifier = train_classifier(digits.train.x, digits.train.y, num_steps=args.classifier_steps,
                                      seed=args.seed, device="cpu")
    results = {}
    for dataset in datasets:
        for variant in variants:
            torch.manual_seed(args.seed)
            objective = build(variant, dataset, args)
            x, test = data_for(variant, dataset, args.seed)
            result = train(objective, x, args)
            report = {player: losses[-1] for player, losses in result.history.loss.items()}
            report.update(evaluate(objective, dataset, test, classifier))
            results[f"{variant}/{dataset}"] = report
            print(f"{variant:8s} {dataset:7s} " + ", ".join(f"{k}={v:.4g}" for k, v in report.items()))
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    for v in VARIANTS:
        parser.add_argument(f"--{v}", action="store_true", help=f"run {v} (no variant flag: run all)")
    parser.add_argument("--dataset", choices=["ring", "digits", "both"], default="both")
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=1, help="discriminator steps per generator step")
    parser.add_argument("--num-samples", type=int, default=4, help="IWGAN importance samples")
    parser.add_argument("--fake-weight", type=float, default=1.0, help="AAVAE weight of the model samples' term")
    parser.add_argument("--noise-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="GAN/IWGAN networks on digits")
    parser.add_argument("--classifier-steps", type=int, default=500)
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
