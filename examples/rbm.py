"""A restricted Boltzmann machine on binarized 8x8 digits: CD-k or PCD training
with hybridpgm.fit, AIS test log-likelihood before and after training,
and samples from block Gibbs chains.

Shows: :class:`hybridpgm.energy.RBM`, the :class:`hybridpgm.infer.ContrastiveDivergence`
/ :class:`hybridpgm.infer.PersistentCD` objectives (weight decay and momentum through
the optimizer, reconstruction error and pseudo-log-likelihood logged by a
callback), and :class:`hybridpgm.infer.AIS` with a base-rate model (checked
against the exact log Z when the hidden layer is small enough to enumerate).

Papers: Hinton, *Training products of experts by minimizing contrastive
divergence* (2002); Tieleman, *Training RBMs using approximations to the
likelihood gradient* (2008); Salakhutdinov & Murray, *On the quantitative
analysis of deep belief networks* (2008).

    python examples/rbm.py --num-steps 3000 --hidden 100 --pcd --out runs/rbm
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import RBM
from hybridpgm.infer import AIS, ContrastiveDivergence, PersistentCD
from hybridpgm.train import EvaluateEvery
from hybridpgm.recipes.common import seed_int


@torch.no_grad()
def test_log_likelihood(rbm: RBM, test: torch.Tensor, train: torch.Tensor, args) -> tuple[float, float, float]:
    """AIS estimate of the mean test log-likelihood, its standard error and the ESS."""
    result = AIS(num_chains=args.ais_chains, num_steps=args.ais_steps)(rbm, data=train)
    return float(rbm.log_likelihood(test, result.log_z).mean()), float(result.stderr), result.ess


def save_samples(samples: torch.Tensor, shape: tuple[int, int], path: Path) -> None:
    import matplotlib.pyplot as plt

    n = samples.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(n, 1.2))
    for ax, image in zip(axes, samples.cpu()):
        ax.imshow(image.reshape(shape), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(args.seed)
    data = load_dataset("digits", binarize="static", seed=args.seed)
    train, test = data.train.x, data.test.x
    rbm = RBM(train.shape[1], args.hidden)
    report = {}
    report["untrained"], _, _ = test_log_likelihood(rbm, test, train, args)
    objective = PersistentCD(rbm, args.k, args.chains) if args.pcd else ContrastiveDivergence(rbm, args.k)
    monitor = EvaluateEvery(max(1, args.num_steps // 5), lambda o: o.monitor(test.to(o.model.weight.device)))
    result = hybridpgm.fit(objective, train, batch_size=args.batch_size, max_steps=args.num_steps,
                           device=args.device, seed=args.seed, callbacks=[monitor], progress=not args.quiet,
                           optim=functools.partial(torch.optim.SGD, lr=args.lr, momentum=args.momentum,
                                                   weight_decay=args.weight_decay))
    for name, points in result.history.metrics.items():
        print(f"{name}: " + ", ".join(f"step {s}: {v:.3f}" for s, v in points))
    rbm.eval()
    test, train = test.to(result.device), train.to(result.device)
    report["trained"], report["stderr_log_z"], report["ess"] = test_log_likelihood(rbm, test, train, args)
    if args.hidden <= 20:
        report["trained_exact"] = float(rbm.log_likelihood(test).detach().mean())
    print("test log-likelihood (nats): " + ", ".join(f"{k}={v:.3f}" for k, v in report.items()))
    samples = rbm.sample(8, steps=args.gibbs_steps)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_samples(samples, data.image_shape, out / "rbm_samples.png")
        # the class, its arguments and the weights: ``hybridpgm.load(out / "rbm.pt")`` rebuilds the RBM
        hybridpgm.save(rbm, out / "rbm.pt", dataset="digits", feature_shape=[train.shape[1]])
        print(f"wrote {out / 'rbm_samples.png'} and {out / 'rbm.pt'} (read it with hybridpgm.load)")
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--k", type=int, default=1, help="Gibbs sweeps per step (CD-k / PCD-k)")
    parser.add_argument("--pcd", action="store_true", help="persistent chains instead of CD")
    parser.add_argument("--chains", type=int, default=100, help="persistent chains for --pcd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--ais-steps", type=int, default=5000)
    parser.add_argument("--gibbs-steps", type=int, default=1000)
    parser.add_argument("--out", default=None,
                        help="directory for the samples (rbm_samples.png) and the model (rbm.pt, for hybridpgm.load)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
