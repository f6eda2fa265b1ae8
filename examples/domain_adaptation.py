"""Adversarial domain adaptation from digits to rotated digits.

Source domain: the bundled 8x8 digits with labels.  Target domain: the same
kind of digits rotated by 90 degrees (or inverted, ``--shift invert``), labels
unseen in training.  Trains :class:`hybridpgm.infer.adversarial.ADA` twice,
with the same networks, steps and seed: source-only (``adversarial_weight=0``)
and adversarial (features whose domain a discriminator
:math:`q_\\phi(y|h)` cannot tell, fitted through its reversal :math:`q^r_\\phi`),
and reports the accuracy on the target's test split.

Papers: Y. Ganin et al., *Domain-Adversarial Training of Neural Networks*,
JMLR 2016; Z. Hu, Z. Yang, R. Salakhutdinov, E. P. Xing, *On Unifying Deep
Generative Models*, ICLR 2018.

    python examples/domain_adaptation.py --num-steps 600
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.diagnostics.gan_metrics import target_accuracy
from hybridpgm.generative.gan import MLPDiscriminator
from hybridpgm.infer.adversarial import ADA, adversarial_optim
from hybridpgm.nn import mlp
from hybridpgm.recipes.common import seed_int


def shift(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The target domain: 8x8 images (flattened) rotated by 90 degrees, or inverted."""
    if kind == "invert":
        return 1 - x
    return torch.rot90(x.reshape(-1, 8, 8), 1, (1, 2)).reshape(-1, 64)


def train_ada(data, weight: float, args: argparse.Namespace) -> ADA:
    torch.manual_seed(args.seed)
    ada = ADA(mlp([64, args.hidden, args.features]), MLPDiscriminator(args.features, (args.hidden // 2,)),
              nn.Linear(args.features, 10), k=args.k, adversarial_weight=weight, input_shape=(64,))
    # source (x, y) and unlabelled target x; in practice the target would be another sample of digits
    paired = ADA.paired_data(data.train.x, data.train.y, shift(data.train.x, args.shift), seed=args.seed)
    hybridpgm.fit(ada, paired, batch_size=args.batch_size, max_steps=args.num_steps, seed=args.seed,
                  device=args.device, optim=adversarial_optim(args.lr), progress=not args.quiet)
    return ada


def main(args: argparse.Namespace) -> dict[str, float]:
    data = load_dataset("digits", seed=args.seed)
    report = {}
    for name, weight in (("source_only", 0.0), ("ada", args.adversarial_weight)):
        ada = train_ada(data, weight, args)
        device = next(ada.module.parameters()).device
        test_t = shift(data.test.x, args.shift).to(device)
        report[f"{name}_target_accuracy"] = target_accuracy(ada.predict, test_t, data.test.y.to(device))
        report[f"{name}_source_accuracy"] = target_accuracy(ada.predict, data.test.x.to(device), data.test.y.to(device))
    print(", ".join(f"{k}={v:.3f}" for k, v in report.items()))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--num-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--shift", choices=["rotate", "invert"], default="rotate")
    parser.add_argument("--adversarial-weight", type=float, default=1.0)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
