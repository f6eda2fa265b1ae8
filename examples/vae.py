"""Variational autoencoder on the bundled 8x8 digits, trained with the ELBO or
the importance-weighted bound, then evaluated by importance sampling.

Shows: a Pyro model/guide pair (:class:`hybridpgm.VAE`) trained by
:func:`hybridpgm.fit` with gradient accumulation, and its test log-likelihood
estimated with the guide as proposal.

Papers: Kingma & Welling, *Auto-Encoding Variational Bayes* (2014);
Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders* (2016).

    python examples/vae.py --num-steps 500 --particles 5
"""

from __future__ import annotations

import argparse
import functools

import torch

import hybridpgm
from hybridpgm.data import load_dataset, training_data
from hybridpgm.recipes.common import positive_int, seed_int


def main(args: argparse.Namespace) -> dict[str, float]:
    data = load_dataset("digits", binarize="dynamic", seed=args.seed)
    torch.manual_seed(args.seed)
    vae = hybridpgm.VAE(data.num_features, z_dim=args.latent_dim, hidden=[args.hidden])
    elbo = hybridpgm.IWAE(args.particles) if args.particles > 1 else None
    objective = hybridpgm.SVIObjective(vae.model, vae.guide, elbo)
    result = hybridpgm.fit(objective, training_data(data), batch_size=args.batch_size, accumulate=args.accumulate,
                           max_steps=args.num_steps, device=args.device, seed=args.seed,
                           optim=functools.partial(torch.optim.Adam, lr=args.lr), progress=not args.quiet)
    vae.eval()
    test = data.test.x.to(result.device)
    report = {
        "steps": result.steps,
        "final_loss": result.history.loss["elbo"][-1],
        "test_elbo": vae.elbo(test, num_samples=10).mean().item(),
        "test_log_likelihood": vae.log_likelihood(test, num_samples=args.eval_samples).mean().item(),
    }
    print(", ".join(f"{k}={v:.4g}" for k, v in report.items()))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--num-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--particles", type=positive_int, default=1,
                        help="K: 1 trains with the ELBO, K > 1 with the IWAE bound of K samples")
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
