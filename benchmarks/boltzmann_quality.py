"""Quality of Boltzmann machines: test log-likelihood on binarized Fashion-MNIST,
and RBM features for classification on 8x8 digits.

Part 0 (exact, Fashion-MNIST): 784x20 RBMs trained by CD-1 and PCD, scored by
the *exact* log-likelihood (2^20 hidden states enumerated), under the old recipe
(constant learning rate 0.05, momentum 0.5, 3 epochs) and the new one (learning
rate decayed linearly to 0 over ``--epochs``).  It also checks the log Z
estimators against the exact value: single-start AIS from the data's pixel rates
(the old default) and the multi-start :func:`hybridpgm.infer.estimate_log_z`.

Part 1 (Fashion-MNIST, statically binarized): 784x``--hidden`` RBMs trained by
CD-1, CD-10 and PCD, and a DBM (weight-doubling pretraining, then PCD with a
mean-field positive phase), all with the decaying-lr recipe.  RBMs are scored by
the sandwich of :func:`hybridpgm.infer.log_likelihood_bounds`: RAISE (Burda et
al. 2015, conservative, below) and multi-start AIS (above); the DBM by its
mean-field lower bound with the multi-start AIS log Z.  Tieleman (2008) reports
PCD above CD-1; Salakhutdinov & Hinton (2009) the DBM above the RBM.

Part 2 (digits): scikit-learn's example "Restricted Boltzmann Machine features
for digit classification" (nudged 8x8 digits, 80/20 split, 100 hidden units, PCD,
logistic regression) against raw pixels and scikit-learn's ``BernoulliRBM``.

    python benchmarks/boltzmann_quality.py      # the recipe of docs/results.md (about 15 CPU minutes)
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import DBM, RBM
from hybridpgm.infer import AIS, ContrastiveDivergence, PersistentCD
from hybridpgm.infer.log_z import estimate_log_z
from hybridpgm.infer.raise_ais import RAISE, log_likelihood_bounds

from common import write_result

OBJECTIVES = {
    "cd1": lambda m, b: ContrastiveDivergence(m, 1),
    "cd10": lambda m, b: ContrastiveDivergence(m, 10),
    "pcd": lambda m, b: PersistentCD(m, 1, b),
}


def train(model, objective, data, args, *, epochs: int, lr: float, decay: bool):
    """SGD with momentum 0.5; ``decay``: the learning rate falls linearly to 0 over the run."""
    steps = epochs * -(-data.shape[0] // args.batch_size)
    scheduler = (functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda s: max(0.0, 1 - s / steps))
                 if decay else None)
    start = time.perf_counter()
    hybridpgm.fit(objective, data, epochs=epochs, batch_size=args.batch_size, device="cpu", seed=args.seed,
                  progress=False, optim=functools.partial(torch.optim.SGD, lr=lr, momentum=0.5),
                  lr_scheduler=scheduler)
    return time.perf_counter() - start


def _quiet_log_z(model, data, args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate = estimate_log_z(model, data, num_chains=args.ais_chains, num_steps=args.ais_steps, **kwargs)
    return estimate, [str(w.message) for w in caught if "AIS" in str(w.message)]


def exact_part(args, train_x, test_x) -> dict:
    out = {"hidden": args.exact_hidden, "recipes": {
        "old": {"epochs": 3, "lr": 0.05, "momentum": 0.5, "lr_decay": "none"},
        "new": {"epochs": args.exact_epochs, "lr": 0.05, "momentum": 0.5, "lr_decay": "linear to 0"}}}
    for recipe, cfg in out["recipes"].items():
        for name in ("cd1", "pcd"):
            torch.manual_seed(args.seed)
            rbm = RBM(train_x.shape[1], args.exact_hidden)
            seconds = train(rbm, OBJECTIVES[name](rbm, args.batch_size), train_x, args, epochs=cfg["epochs"],
                            lr=cfg["lr"], decay=cfg["lr_decay"] != "none")
            rbm = rbm.double()
            with torch.no_grad():
                exact = float(rbm.log_partition())
                ll = float(rbm.log_likelihood(test_x.double(), exact).mean())
            torch.manual_seed(args.seed + 1)
            single = AIS(num_chains=args.ais_chains, num_steps=args.ais_steps)(rbm, data=train_x.double())
            torch.manual_seed(args.seed + 1)
            multi, warned = _quiet_log_z(rbm, train_x.double(), args)
            lo, hi = multi.interval()
            out[f"{recipe}_{name}"] = {
                "exact_test_log_likelihood": ll, "exact_log_z": exact, "train_seconds": seconds,
                "ais_data_start": {"log_z": float(single.log_z), "stderr": float(single.stderr), "ess": single.ess,
                                   "error": float(single.log_z) - exact},
                "ais_multi_start": {**multi.to_dict(), "error": float(multi.log_z) - exact,
                                    "interval_contains_exact": lo <= exact <= hi, "warnings": warned}}
            print(recipe, name, out[f"{recipe}_{name}"], flush=True)
        out[f"{recipe}_pcd_minus_cd1_nats"] = (out[f"{recipe}_pcd"]["exact_test_log_likelihood"]
                                               - out[f"{recipe}_cd1"]["exact_test_log_likelihood"])
    return out


def fashion_mnist_part(args, train_x, test_x) -> dict:
    results = {"recipe": {"epochs": args.epochs, "lr": args.lr, "momentum": 0.5, "lr_decay": "linear to 0",
                          "batch_size": args.batch_size, "num_train": train_x.shape[0],
                          "num_test_ais": test_x.shape[0], "num_test_raise": args.raise_test}}
    raise_ = RAISE(num_chains=args.raise_chains, num_steps=args.raise_steps)
    for name in args.models:
        if name == "dbm":
            continue
        torch.manual_seed(args.seed)
        rbm = RBM(train_x.shape[1], args.hidden)
        objective = OBJECTIVES[name](rbm, args.batch_size)
        seconds = train(rbm, objective, train_x, args, epochs=args.epochs, lr=args.lr, decay=True)
        chains = objective.chains[0] if name == "pcd" else None
        torch.manual_seed(args.seed + 1)
        log_z, warned = _quiet_log_z(rbm, train_x, args, chains=chains)
        torch.manual_seed(args.seed + 2)
        bounds = log_likelihood_bounds(rbm, test_x[:args.raise_test], train_x, log_z=log_z, raise_=raise_)
        with torch.no_grad():
            ais_ll = float(rbm.log_likelihood(test_x, log_z.log_z).mean())
        results[f"rbm_{name}"] = {"test_log_likelihood_ais": ais_ll, "bounds": bounds.to_dict(),
                                  "warnings": warned, "train_seconds": seconds}
        print(name, results[f"rbm_{name}"], flush=True)
    if "rbm_pcd" in results and "rbm_cd1" in results:
        results["pcd_minus_cd1_nats_ais"] = (results["rbm_pcd"]["test_log_likelihood_ais"]
                                             - results["rbm_cd1"]["test_log_likelihood_ais"])
        results["pcd_minus_cd1_nats_raise"] = (results["rbm_pcd"]["bounds"]["lower_raise"]
                                               - results["rbm_cd1"]["bounds"]["lower_raise"])
    if "dbm" not in args.models:
        return results
    torch.manual_seed(args.seed)
    dbm = DBM([train_x.shape[1], *args.dbm_hidden])
    steps = args.epochs * -(-train_x.shape[0] // args.batch_size)
    decay = functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda s: max(0.0, 1 - s / steps))
    start = time.perf_counter()
    dbm.pretrain(train_x, optim=functools.partial(torch.optim.SGD, lr=args.lr, momentum=0.5), lr_scheduler=decay,
                 epochs=args.epochs, batch_size=args.batch_size, device="cpu", seed=args.seed, progress=False)
    objective = PersistentCD(dbm, 1, args.batch_size)
    seconds = time.perf_counter() - start
    seconds += train(dbm, objective, train_x, args, epochs=args.epochs, lr=args.lr / 2, decay=True)
    torch.manual_seed(args.seed + 1)
    log_z, warned = _quiet_log_z(dbm, train_x, args, chains=objective.chains[0])
    with torch.no_grad():
        bound = float(dbm.log_likelihood_bound(test_x, log_z.log_z).mean())
    results["dbm"] = {"sizes": dbm.sizes, "test_log_likelihood_lower_bound_ais": bound, "ais": log_z.to_dict(),
                      "warnings": warned, "train_seconds": seconds,
                      "finetune": {"lr": args.lr / 2, "epochs": args.epochs, "lr_decay": "linear to 0"}}
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
    torch.set_num_threads(args.threads)
    payload = {"config": {k: v for k, v in vars(args).items() if k != "out"}}
    if "digits" in args.parts:
        payload["digits"] = digits_part(args)
    if {"exact", "fashion"} & set(args.parts):
        data = load_dataset("fashion-mnist", binarize="static", seed=args.seed)
        train_x, test_x = data.train.x[: args.num_train], data.test.x[: args.num_test]
        if "exact" in args.parts:
            payload["fashion_mnist_exact"] = exact_part(args, train_x, test_x)
        if "fashion" in args.parts:
            payload["fashion_mnist"] = fashion_mnist_part(args, train_x, test_x)
    write_result("boltzmann_quality", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["digits", "exact", "fashion"],
                        choices=["digits", "exact", "fashion"])
    parser.add_argument("--num-train", type=int, default=10000)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--dbm-hidden", type=int, nargs=2, default=[500, 500])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--exact-hidden", type=int, default=20)
    parser.add_argument("--exact-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--models", nargs="+", default=["cd1", "cd10", "pcd", "dbm"],
                        choices=["cd1", "cd10", "pcd", "dbm"])
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--ais-steps", type=int, default=5000)
    parser.add_argument("--raise-test", type=int, default=200, help="test images scored by RAISE")
    parser.add_argument("--raise-chains", type=int, default=1)
    parser.add_argument("--raise-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/boltzmann_quality.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
