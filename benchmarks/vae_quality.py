"""Quality: VAE (ELBO) against IWAE with K=5 and K=50 on binarized Fashion-MNIST.

Same architecture (784-hidden-z), optimizer, epochs and seed for each
objective; test log-likelihood estimated by importance sampling with
``--eval-samples`` (>= 1000) draws from each model's guide on the first
``--eval-size`` statically binarized test images.  Burda et al. (2016) report
IWAE above VAE on MNIST, more so as K grows; this records what hybridpgm
measures.  Results go to ``results/vae_quality.json``.

    python benchmarks/vae_quality.py --epochs 5
    python benchmarks/vae_quality.py --dataset digits --epochs 2 --eval-samples 1000  # quick
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

import hybridpgm
from hybridpgm.data import load_dataset, training_data

from common import write_result


def run_one(data, particles: int, args, device) -> dict:
    torch.manual_seed(args.seed)
    vae = hybridpgm.VAE(data.num_features, args.z_dim, [args.hidden])
    elbo = hybridpgm.IWAE(particles) if particles > 1 else None
    started = time.perf_counter()
    result = hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide, elbo), training_data(data),
                           epochs=args.epochs, batch_size=args.batch_size, device=device, seed=args.seed,
                           optim=functools.partial(torch.optim.Adam, lr=args.lr), progress=args.progress)
    train_s = time.perf_counter() - started
    vae.eval()
    test = data.test.x[: args.eval_size].to(result.device)
    ll, elbo_values = [], []
    for chunk in test.split(100):
        ll.append(vae.log_likelihood(chunk, num_samples=args.eval_samples, chunk_size=250))
        elbo_values.append(vae.elbo(chunk, num_samples=10))
    ll, elbo_values = torch.cat(ll), torch.cat(elbo_values)
    return {
        "objective": "ELBO" if particles == 1 else f"IWAE K={particles}",
        "particles": particles,
        "train_seconds": train_s,
        "steps": result.steps,
        "test_log_likelihood": ll.mean().item(),
        "test_log_likelihood_stderr": (ll.std() / len(ll) ** 0.5).item(),
        "test_elbo": elbo_values.mean().item(),
    }


def main(args: argparse.Namespace) -> dict:
    device = hybridpgm.train.device.resolve_device(args.device)
    data = load_dataset(args.dataset, binarize="dynamic", seed=args.seed)
    runs = [run_one(data, k, args, device) for k in args.particles]
    payload = {
        "dataset": args.dataset,
        "architecture": f"{data.num_features}-{args.hidden}-{args.z_dim}",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "eval_samples": args.eval_samples,
        "eval_size": min(args.eval_size, len(data.test)),
        "device": str(device),
        "runs": runs,
        "best": max(runs, key=lambda r: r["test_log_likelihood"])["objective"],
    }
    write_result(f"vae_quality_{args.dataset}", payload, args.out)
    return payload


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--particles", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
