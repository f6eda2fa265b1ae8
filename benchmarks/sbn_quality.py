"""Test log-likelihood of sigmoid belief nets trained with wake-sleep,
reweighted wake-sleep (K=5) and NVIL for the same number of epochs.

On binarized digits and binarized Fashion-MNIST, an SBN with hidden layers
``--hidden`` (default 200-200, as in Bornschein & Bengio 2015) is trained from
the same initialisation by each objective through :func:`hybridpgm.fit`
(same epochs, batch size, optimizer and learning rate); its test
log-likelihood is then estimated by importance sampling with
``--eval-samples`` (>= 1000) samples from the recognition network.  The
reference is classic wake-sleep: the JSON gives each objective's gain in nats
over it and its training-time ratio to it, plus the untrained model's value.
Bornschein & Bengio found RWS better than wake-sleep; the numbers are
reported whatever the ranking.

    python benchmarks/sbn_quality.py --threads 1 --lr 3e-3 --dataset-epochs digits=100 fashion-mnist=3 \\
        --num-test 500 --objectives wake-sleep rws nvil vimco iwae-concrete  # as reported
    python benchmarks/sbn_quality.py                                   # full size
    python benchmarks/sbn_quality.py --num-train 2000 --epochs 1 --num-test 100 \\
        --eval-samples 1000 --hidden 50 50                             # quick
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import IWAE, NVIL, RWS, VIMCO, SVIObjective, WakeSleep

from common import write_result

OBJECTIVES = {
    "wake-sleep": lambda sbn, k: WakeSleep(sbn.model, sbn.guide, max_plate_nesting=1),
    "rws": lambda sbn, k: RWS(sbn.model, sbn.guide, num_particles=k, max_plate_nesting=1),
    "nvil": lambda sbn, k: NVIL(sbn.model, sbn.guide, max_plate_nesting=1),
    "vimco": lambda sbn, k: VIMCO(sbn.model, sbn.guide, num_particles=k, max_plate_nesting=1),
    "iwae-concrete": lambda sbn, k: SVIObjective(sbn.model, sbn.guide, IWAE(k, max_plate_nesting=1), temperature=0.5),
}


def evaluate(sbn: SigmoidBeliefNet, x: torch.Tensor, samples: int, chunk: int) -> tuple[torch.Tensor, float]:
    """Per-image importance-sampled log-likelihoods ``[N]`` and the seconds they took."""
    start = time.perf_counter()
    ll = torch.cat([sbn.log_likelihood(xb, num_samples=samples, chunk_size=chunk) for xb in x.split(100)])
    return ll.cpu(), time.perf_counter() - start


def _se(values: torch.Tensor) -> float:
    return values.std().item() / math.sqrt(len(values))


def run_dataset(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    data = load_dataset(name, binarize="static", seed=args.seed)
    train = data.train.x[: args.num_train] if args.num_train else data.train.x
    test = data.test.x[: args.num_test].to(device)
    sizes = [train.shape[1], *args.hidden]
    torch.manual_seed(args.seed)
    init = SigmoidBeliefNet(sizes).to(device).state_dict()
    epochs = dict(item.split("=") for item in args.dataset_epochs).get(name, args.epochs)
    epochs = int(epochs)
    out = {"num_train": len(train), "num_test": len(test), "layer_sizes": sizes, "epochs": epochs,
           "objectives": {}}
    sbn = SigmoidBeliefNet(sizes).to(device)
    sbn.load_state_dict(init)
    torch.manual_seed(args.seed + 1)
    out["untrained_log_likelihood"] = evaluate(sbn, test, args.eval_samples, args.chunk)[0].mean().item()
    per_image = {}
    for obj in args.objectives:  # warm-up (first-call costs must not count against one objective)
        scratch = SigmoidBeliefNet(sizes).to(device)
        hybridpgm.fit(OBJECTIVES[obj](scratch, args.particles), train[: 2 * args.batch_size], epochs=1,
                      batch_size=args.batch_size, device=device, progress=False)
    for obj in args.objectives:
        sbn = SigmoidBeliefNet(sizes).to(device)
        sbn.load_state_dict(init)
        objective = OBJECTIVES[obj](sbn, args.particles)
        start = time.perf_counter()
        result = hybridpgm.fit(objective, train, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                               optim=functools.partial(torch.optim.Adam, lr=args.lr), device=device,
                               progress=False)
        train_s = time.perf_counter() - start
        sbn.eval()
        torch.manual_seed(args.seed + 1)
        per_image[obj], eval_s = evaluate(sbn, test, args.eval_samples, args.chunk)
        mean, se = per_image[obj].mean().item(), _se(per_image[obj])
        out["objectives"][obj] = {"test_log_likelihood": mean, "stderr": se, "train_seconds": train_s,
                                  "steps": result.steps, "eval_seconds": eval_s}
        print(f"{name} {obj}: test log p(x) = {mean:.2f} +- {se:.2f} nats, train {train_s:.1f}s", flush=True)
    results = out["objectives"]
    ref = "wake-sleep" if "wake-sleep" in results else next(iter(results))
    for obj, r in results.items():
        r[f"gain_over_{ref}_nats"] = r["test_log_likelihood"] - results[ref]["test_log_likelihood"]
        r[f"gain_over_{ref}_paired_stderr"] = _se(per_image[obj] - per_image[ref])  # same test images
        r[f"train_time_ratio_to_{ref}"] = r["train_seconds"] / results[ref]["train_seconds"]
    out["reference"] = ref
    out["best"] = max(results, key=lambda o: results[o]["test_log_likelihood"])
    return out


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    payload = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "datasets": {}}
    for name in args.datasets:
        payload["datasets"][name] = run_dataset(name, args, device)
    write_result("sbn_quality", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--objectives", nargs="+", default=["wake-sleep", "rws", "nvil"], choices=list(OBJECTIVES))
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 200])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dataset-epochs", nargs="*", default=[], metavar="NAME=EPOCHS",
                        help="per-dataset override of --epochs, e.g. digits=100")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--particles", type=int, default=5, help="K for RWS (and VIMCO)")
    parser.add_argument("--num-train", type=int, default=0, help="training examples used (0: all)")
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100, help="importance samples per vectorized pass")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/sbn_quality.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
