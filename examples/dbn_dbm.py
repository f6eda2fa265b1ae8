"""Deep belief net and deep Boltzmann machine on binarized 8x8 digits.

Shows: greedy layer-wise pretraining of a :class:`hybridpgm.energy.DBN`
with :func:`hybridpgm.fit`; unrolling it into a classifier and into a deep
autoencoder, each fine-tuned with ``fit``; generative samples (Gibbs in the
top RBM, then a top-down pass); and a two-layer :class:`hybridpgm.energy.DBM`
pretrained with the weight-doubling scheme, trained with a mean-field positive
phase and persistent chains (:class:`hybridpgm.infer.PersistentCD`), and
evaluated by the mean-field lower bound on the test log-likelihood with
:class:`hybridpgm.infer.AIS` for log Z.

Papers: Hinton, Osindero & Teh, *A fast learning algorithm for deep belief
nets* (2006); Hinton & Salakhutdinov, *Reducing the dimensionality of data with
neural networks* (2006); Salakhutdinov & Hinton, *Deep Boltzmann machines* (2009).

    python examples/dbn_dbm.py --num-steps 2000 --hidden 100 50
"""

from __future__ import annotations

import argparse
import functools

import torch

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import DBM, DBN, ClassificationObjective, ReconstructionObjective
from hybridpgm.infer import AIS, PersistentCD
from hybridpgm.recipes.common import seed_int


def main(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(args.seed)
    data = load_dataset("digits", binarize="static", seed=args.seed)
    train, test = data.train.x, data.test.x
    sizes = [train.shape[1], *args.hidden]
    common = dict(batch_size=args.batch_size, max_steps=args.num_steps, device=args.device,
                  seed=args.seed, progress=not args.quiet)
    sgd = functools.partial(torch.optim.SGD, lr=args.lr, momentum=0.5)
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    report = {}

    # ---- DBN: pretraining, then fine-tuning as a classifier and as an autoencoder
    dbn = DBN(sizes)
    dbn.pretrain(train, optim=sgd, **common)
    classifier = dbn.to_classifier(10)
    result = hybridpgm.fit(ClassificationObjective(classifier), (train, data.train.y), optim=adam, **common)
    with torch.no_grad():
        logits = classifier(test.to(result.device))
        report["dbn_test_accuracy"] = float((logits.argmax(-1).cpu() == data.test.y).float().mean())
    autoencoder = dbn.to_autoencoder()
    objective = ReconstructionObjective(autoencoder)
    with torch.no_grad():
        report["ae_test_loss_before"] = float(objective.loss("model", test.to(next(autoencoder.parameters()).device)))
    result = hybridpgm.fit(objective, train, optim=adam, **common)
    with torch.no_grad():
        report["ae_test_loss_after"] = float(objective.loss("model", test.to(result.device)))
    samples = dbn.sample(4, steps=args.gibbs_steps)
    print(f"DBN samples: {samples.shape[0]} digits, mean intensity {float(samples.mean()):.3f}")

    # ---- DBM: weight-doubling pretraining, then PCD with a mean-field positive phase
    dbm = DBM(sizes, mean_field_steps=args.mean_field_steps)
    dbm.pretrain(train, optim=sgd, **common)
    result = hybridpgm.fit(PersistentCD(dbm, k=1, num_chains=args.chains), train, optim=sgd, **common)
    dbm.eval()
    train, test = train.to(result.device), test.to(result.device)
    ais = AIS(num_chains=args.ais_chains, num_steps=args.ais_steps)(dbm, data=train)
    report.update(dbm_log_z=float(ais.log_z), dbm_log_z_stderr=float(ais.stderr), dbm_ais_ess=ais.ess)
    report["dbm_test_bound"] = float(dbm.log_likelihood_bound(test, ais.log_z).mean())
    print(", ".join(f"{k}={v:.3f}" for k, v in report.items()))
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--num-steps", type=int, default=2000, help="optimizer steps of each training stage")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 50], help="hidden layer sizes, bottom-up")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--chains", type=int, default=100, help="persistent chains of the DBM")
    parser.add_argument("--mean-field-steps", type=int, default=10)
    parser.add_argument("--ais-chains", type=int, default=100)
    parser.add_argument("--ais-steps", type=int, default=5000)
    parser.add_argument("--gibbs-steps", type=int, default=1000)
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
