"""Speed of one CD-1 epoch of an RBM: hybridpgm (``ContrastiveDivergence`` through
``fit``) against scikit-learn's ``BernoulliRBM`` and a minimal hand-written
PyTorch CD-1 loop, in the same run.

All three train a 784 x 500 RBM (by default) with batch 100 and plain SGD on
statically binarized Fashion-MNIST.  The hand-written loop computes the CD-1
update in closed form (five matrix products per batch, no autograd); hybridpgm
differentiates the free-energy surrogate and goes through ``fit`` (batching,
per-step loss sync, history); a third row runs the same objective in a bare
loop to separate the cost of ``fit``.  scikit-learn's ``BernoulliRBM``
trains with PCD-1 (its only algorithm): the same number of products per batch.
Each method is timed ``--rounds`` times in alternation; medians and ratios go to
``results/rbm_speed.json``.

    python benchmarks/rbm_speed.py                                   # full epoch, 50,000 images
    python benchmarks/rbm_speed.py --num-examples 5000 --rounds 3    # quick
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import RBM
from hybridpgm.infer import ContrastiveDivergence
from hybridpgm.train.device import resolve_device

from common import write_result


def hand_written_cd1(x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int) -> None:
    """The reference: CD-1 with the update written out, no autograd, no optimizer object."""
    torch.manual_seed(seed)
    w = torch.randn(x.shape[1], hidden, device=x.device) * 0.01
    b = torch.zeros(x.shape[1], device=x.device)
    c = torch.zeros(hidden, device=x.device)
    order = torch.randperm(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], batch_size):
        v = x[order[start:start + batch_size]]
        ph = torch.sigmoid(v @ w + c)
        h = (torch.rand_like(ph) < ph).to(v.dtype)
        pv = torch.sigmoid(h @ w.T + b)
        v1 = (torch.rand_like(pv) < pv).to(v.dtype)
        ph1 = torch.sigmoid(v1 @ w + c)
        scale = lr / v.shape[0]
        w += scale * (v.T @ ph - v1.T @ ph1)
        b += scale * (v - v1).sum(0)
        c += scale * (ph - ph1).sum(0)
    if x.is_cuda:
        torch.cuda.synchronize()


def hybridpgm_fit(x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    rbm = RBM(x.shape[1], hidden)
    hybridpgm.fit(ContrastiveDivergence(rbm, k=1, check_data=False), x, epochs=1, batch_size=batch_size,
                  optim=functools.partial(torch.optim.SGD, lr=lr), device=x.device, seed=seed, progress=False)


def hybridpgm_loop(x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int) -> None:
    """The same objective in a bare loop (no ``fit``)."""
    torch.manual_seed(seed)
    objective = ContrastiveDivergence(RBM(x.shape[1], hidden).to(x.device), k=1, check_data=False)
    params = objective.players()["model"]
    optimizer = torch.optim.SGD(params, lr=lr)
    order = torch.randperm(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], batch_size):
        optimizer.zero_grad(set_to_none=True)
        objective.loss("model", x[order[start:start + batch_size]]).backward(inputs=params)
        optimizer.step()
    if x.is_cuda:
        torch.cuda.synchronize()


def sklearn_rbm(x: np.ndarray, hidden: int, batch_size: int, lr: float, seed: int) -> None:
    from sklearn.neural_network import BernoulliRBM

    BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch_size, n_iter=1, random_state=seed).fit(x)


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset("fashion-mnist", binarize="static", seed=args.seed).train.x[: args.num_examples]
    x = data.to(device)
    x_np = data.numpy()
    methods = {
        "hybridpgm_fit": lambda: hybridpgm_fit(x, args.hidden, args.batch_size, args.lr, args.seed),
        "hybridpgm_loop": lambda: hybridpgm_loop(x, args.hidden, args.batch_size, args.lr, args.seed),
        "hand_written_torch": lambda: hand_written_cd1(x, args.hidden, args.batch_size, args.lr, args.seed),
    }
    if not args.skip_sklearn:
        methods["sklearn_bernoulli_rbm"] = lambda: sklearn_rbm(x_np, args.hidden, args.batch_size, args.lr, args.seed)
    times = {name: [] for name in methods}
    with threadpool_limits(torch.get_num_threads()):  # same thread count for NumPy's BLAS
        hybridpgm_fit(x[:1000], args.hidden, args.batch_size, args.lr, args.seed)  # warm-up: lazy imports,
        hand_written_cd1(x[:1000], args.hidden, args.batch_size, args.lr, args.seed)  # allocator, BLAS init
        if not args.skip_sklearn:
            sklearn_rbm(x_np[:1000], args.hidden, args.batch_size, args.lr, args.seed)
        for _ in range(args.rounds):
            for name, run in methods.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    payload = {
        "config": {"num_examples": x.shape[0], "visible": x.shape[1], "hidden": args.hidden,
                   "batch_size": args.batch_size, "rounds": args.rounds, "device": str(device),
                   "threads": torch.get_num_threads()},
        "epoch_seconds_median": median,
        "epoch_seconds_min": best,
        "epoch_seconds_all": times,
    }
    for stat, table in [("median", median), ("min", best)]:
        payload[f"ratio_hybridpgm_fit_over_hand_written_{stat}"] = table["hybridpgm_fit"] / table["hand_written_torch"]
        payload[f"ratio_hybridpgm_loop_over_hand_written_{stat}"] = table["hybridpgm_loop"] / table["hand_written_torch"]
        if "sklearn_bernoulli_rbm" in table:
            payload[f"speedup_hybridpgm_fit_over_sklearn_{stat}"] = table["sklearn_bernoulli_rbm"] / table["hybridpgm_fit"]
    write_result("rbm_speed", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=50000)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch/BLAS threads (0: torch's default)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/rbm_speed.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
