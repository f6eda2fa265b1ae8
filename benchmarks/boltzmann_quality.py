"""Quality of Boltzmann machines: AIS test log-likelihood on binarized Fashion-MNIST,
and RBM features for classification on 8x8 digits.

Part 1 (Fashion-MNIST, statically binarized): RBMs with ``--hidden`` units
trained with CD-1, CD-10 and PCD for the same number of epochs (SGD with
momentum, same learning rate), and a two-layer DBM (weight-doubling
pretraining, then PCD with a mean-field positive phase).  Each is scored on
test images by AIS (base-rate model from the training data): the RBM's
estimated log-likelihood, the DBM's mean-field lower bound with AIS log Z.
Salakhutdinov & Murray (2008) report about -86 nats (binarized MNIST, 500 hidden,
CD-25 with long training); a short CPU run here is far from converged.

Part 2 (digits): scikit-learn's example "Restricted Boltzmann Machine features
for digit classification": the 8x8 digits min-max scaled to [0, 1], nudged by
one pixel in four directions (5x the data), an 80/20 split with
``random_state=0``; an RBM with 100 hidden units (learning rate 0.06, batch 10,
10 epochs, PCD) then logistic regression (C=6000), against logistic
regression on raw pixels (C=100) and scikit-learn's own ``BernoulliRBM`` pipeline.

    python benchmarks/boltzmann_quality.py                          # full (hours on CPU)
    python benchmarks/boltzmann_quality.py --num-train 10000 --epochs 1 --hidden 200 --num-test 1000
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import DBM, RBM
from hybridpgm.infer import AIS, ContrastiveDivergence, PersistentCD

from common import write_result


def fashion_mnist_part(args, device) -> dict:
    data = load_dataset("fashion-mnist", binarize="static", seed=args.seed)
    train = data.train.x[: args.num_train].to(device)
    test = data.test.x[: args.num_test].to(device)
    fit = functools.partial(hybridpgm.fit, epochs=args.epochs, batch_size=args.batch_size, device=device,
                            seed=args.seed, progress=False)
    sgd = functools.partial(torch.optim.SGD, lr=args.lr, momentum=0.5)
    ais = AIS(num_chains=args.ais_chains, num_steps=args.ais_steps)
    results = {}
    objectives = {
        "rbm_cd1": lambda m: ContrastiveDivergence(m, 1),
        "rbm_cd10": lambda m: ContrastiveDivergence(m, 10),
        "rbm_pcd": lambda m: PersistentCD(m, 1, args.batch_size),
    }
    for name, make in objectives.items():
        if name.removeprefix("rbm_") not in args.models:
            continue
        torch.manual_seed(args.seed)
        rbm = RBM(train.shape[1], args.hidden).to(device)
        start = time.perf_counter()
        lr = args.pcd_lr if name == "rbm_pcd" and args.pcd_lr else args.lr
        fit(make(rbm), train, optim=functools.partial(torch.optim.SGD, lr=lr, momentum=0.5))
        seconds = time.perf_counter() - start
        with torch.no_grad():
            estimate = ais(rbm, data=train)
            ll = float(rbm.log_likelihood(test, estimate.log_z).mean())
        results[name] = {"test_log_likelihood": ll, "lr": lr, "log_z": float(estimate.log_z),
                         "log_z_stderr": float(estimate.stderr), "ais_ess": estimate.ess, "train_seconds": seconds}
        print(name, results[name], flush=True)
    if "rbm_pcd" in results and "rbm_cd1" in results:
        results["pcd_minus_cd1_nats"] = (results["rbm_pcd"]["test_log_likelihood"]
                                         - results["rbm_cd1"]["test_log_likelihood"])
    if "dbm" not in args.models:
        return results
    torch.manual_seed(args.seed)
    dbm = DBM([train.shape[1], *args.dbm_hidden]).to(device)
    start = time.perf_counter()
    dbm.pretrain(train, optim=sgd, epochs=args.epochs, batch_size=args.batch_size, device=device, seed=args.seed,
                 progress=False)
    fit(PersistentCD(dbm, 1, args.batch_size), train, optim=functools.partial(torch.optim.SGD, lr=args.lr / 2))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        estimate = ais(dbm, data=train)
        bound = float(dbm.log_likelihood_bound(test, estimate.log_z).mean())
    results["dbm"] = {"sizes": dbm.sizes, "test_log_likelihood_lower_bound": bound, "log_z": float(estimate.log_z),
                      "log_z_stderr": float(estimate.stderr), "ais_ess": estimate.ess, "train_seconds": seconds}
    print("dbm", results["dbm"], flush=True)
    return results


def nudge(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn example's ``nudge_dataset``: shift each 8x8 image by one pixel in 4 directions."""
    from scipy.ndimage import convolve

    kernels = [[[0, 1, 0], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
               [[0, 0, 0], [0, 0, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 1, 0]]]
    shifted = [np.apply_along_axis(lambda a, k=k: convolve(a.reshape(8, 8), k, mode="constant").ravel(), 1, x)
               for k in kernels]
    return np.concatenate([x] + shifted), np.concatenate([y] * 5)


def digits_part(args) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import BernoulliRBM
    from sklearn.pipeline import Pipeline

    x, y = load_digits(return_X_y=True)
    x, y = nudge(np.asarray(x, "float32"), y)
    x = ((x - x.min(0)) / (x.max(0) + 1e-4)).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    out = {}
    torch.manual_seed(args.seed)
    rbm = RBM(64, 100, probabilities=True)
    hybridpgm.fit(PersistentCD(rbm, 1, 10), torch.from_numpy(x_train), epochs=10, batch_size=10, seed=args.seed,
                  optim=functools.partial(torch.optim.SGD, lr=0.06), device="cpu", progress=False)
    features = lambda a: rbm.transform(torch.from_numpy(a)).numpy()  # noqa: E731
    with threadpool_limits(1):
        clf = LogisticRegression(C=6000.0, max_iter=1000).fit(features(x_train), y_train)
        out["hybridpgm_rbm_logistic_accuracy"] = float(clf.score(features(x_test), y_test))
        raw = LogisticRegression(C=100.0, max_iter=1000).fit(x_train, y_train)
        out["raw_pixel_logistic_accuracy"] = float(raw.score(x_test, y_test))
        sk = Pipeline([("rbm", BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=10, batch_size=10,
                                            random_state=args.seed)),
                       ("logistic", LogisticRegression(C=6000.0, max_iter=1000))]).fit(x_train, y_train)
        out["sklearn_rbm_logistic_accuracy"] = float(sk.score(x_test, y_test))
    print("digits", out, flush=True)
    return out


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    from hybridpgm.train.device import resolve_device

    device = resolve_device(args.device)
    payload = {"config": {k: v for k, v in vars(args).items() if k != "out"}}
    if not args.skip_digits:
        payload["digits"] = digits_part(args)
    if not args.skip_fashion:
        payload["fashion_mnist"] = fashion_mnist_part(args, device)
    write_result("boltzmann_quality", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=50000)
    parser.add_argument("--num-test", type=int, default=10000)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--dbm-hidden", type=int, nargs=2, default=[500, 1000])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--pcd-lr", type=float, default=None, help="learning rate of PCD (default: --lr)")
    parser.add_argument("--models", nargs="+", default=["cd1", "cd10", "pcd", "dbm"],
                        choices=["cd1", "cd10", "pcd", "dbm"])
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--ais-steps", type=int, default=14500)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-fashion", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/boltzmann_quality.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
