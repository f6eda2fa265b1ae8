"""Sigmoid belief nets on binarized 8x8 digits, trained with wake-sleep,
reweighted wake-sleep, NVIL, VIMCO and the IWAE bound of a Concrete
relaxation, then compared by importance-sampled test log-likelihood.

Shows: one :class:`hybridpgm.generative.SigmoidBeliefNet` (a Helmholtz
machine: generative SBN plus bottom-up recognition network) trained by
:func:`hybridpgm.fit` with five objectives from :mod:`hybridpgm.infer` (``--objectives``); the
test log-likelihood of each (and of the untrained model) estimated with the
recognition network as proposal; and, with ``--gibbs``, posterior samples of
the first hidden layer by Gibbs sampling with exact per-unit conditionals.

Papers: Hinton, Dayan, Frey & Neal, *The wake-sleep algorithm* (1995);
Bornschein & Bengio, *Reweighted Wake-Sleep* (2015); Mnih & Gregor, *Neural
Variational Inference and Learning in Belief Networks* (2014); Mnih & Rezende,
*Variational inference for Monte Carlo objectives* (2016); Maddison, Mnih & Teh,
*The Concrete Distribution* (2017).

    python examples/sbn.py --num-steps 2000 --hidden 64 32
"""

from __future__ import annotations

import argparse
import functools

import torch

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.generative import SBNGibbs, SigmoidBeliefNet
from hybridpgm.infer import IWAE, NVIL, RWS, VIMCO, SVIObjective, WakeSleep
from hybridpgm.recipes.common import positive_int, seed_int

OBJECTIVES = {
    "wake-sleep": lambda sbn, k: WakeSleep(sbn.model, sbn.guide),
    "rws": lambda sbn, k: RWS(sbn.model, sbn.guide, num_particles=k),
    "nvil": lambda sbn, k: NVIL(sbn.model, sbn.guide),
    "vimco": lambda sbn, k: VIMCO(sbn.model, sbn.guide, num_particles=k),
    # the IWAE bound of the Concrete-relaxed net (temperature 0.5); evaluated as the discrete net
    "iwae-concrete": lambda sbn, k: SVIObjective(sbn.model, sbn.guide, IWAE(k), temperature=0.5),
}


def main(args: argparse.Namespace) -> dict[str, float]:
    data = load_dataset("digits", binarize="static", seed=args.seed)
    test = data.test.x[: args.num_test]
    sizes = [data.train.x.shape[1], *args.hidden]
    report = {}
    for name in args.objectives:
        torch.manual_seed(args.seed)
        sbn = SigmoidBeliefNet(sizes)
        if "untrained" not in report:
            report["untrained"] = sbn.log_likelihood(test, num_samples=args.eval_samples).mean().item()
        objective = OBJECTIVES[name](sbn, args.particles)
        result = hybridpgm.fit(objective, data.train.x, batch_size=args.batch_size,
                               max_steps=args.num_steps, device=args.device, seed=args.seed,
                               optim=functools.partial(torch.optim.Adam, lr=args.lr), progress=not args.quiet)
        sbn.eval()
        torch.manual_seed(args.seed + 1)
        report[name] = sbn.log_likelihood(test.to(result.device), num_samples=args.eval_samples).mean().item()
        if args.gibbs:
            samples = SBNGibbs(sbn).sample(test[:4].to(result.device), num_samples=50, warmup=20, seed=args.seed)
            on = samples.layers[0].float().mean((0, 1))  # posterior P(h1_j = 1 | x) per test image
            print(f"{name}: Gibbs posterior of h1 for 4 test digits (first 6 units):\n{on[:, :6]}")
    print("test log-likelihood (nats, higher is better): "
          + ", ".join(f"{k}={v:.2f}" for k, v in report.items()))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--num-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 16], help="hidden layer sizes, bottom-up")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--particles", type=positive_int, default=5,
                        help="K for RWS, VIMCO (at least 2) and IWAE (default 5)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=360)
    parser.add_argument("--gibbs", action="store_true", help="also run Gibbs on a few test digits")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if "vimco" in args.objectives and args.particles < 2:
        parser.error(f"--particles {args.particles}: VIMCO needs at least 2 (its leave-one-out baselines); "
                     "give --particles 2 or more, or leave vimco out of --objectives")
    return args


if __name__ == "__main__":
    main(parse_args())
