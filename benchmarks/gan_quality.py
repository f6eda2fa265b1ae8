"""Quality of the GAN family, side by side (Hu et al., *On Unifying Deep Generative Models*, ICLR 2018).

* GAN vs IWGAN -- same networks, steps and seeds -- on the ring of 8 Gaussians
  (modes covered, high-quality rate), on digits and on Fashion-MNIST when its
  IDX files are installed (classifier-based inception score); mean +- sd over
  seeds, and IWGAN's wall time per step as a ratio to the GAN's (the named
  reference of the same run).
* VAE vs AAVAE test ELBO on binarized digits, trained on 10% and 100% of the
  training split (same VAE, steps, seeds).
* ADA vs source-only target accuracy, digits -> digits rotated by 90 degrees.

Hu et al. report IWGAN above GAN (MNIST inception score 8.34 -> 8.45) and
AAVAE above VAE; this benchmark reports what this library measures.

    python benchmarks/gan_quality.py --seeds 3 --ring-steps 2000 --digits-steps 2000 \\
        --vae-steps 600 --ada-steps 400 --fashion-steps 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import hybridpgm  # noqa: E402
from common import write_result  # noqa: E402
from domain_adaptation import shift  # noqa: E402
from domain_adaptation import train_ada  # noqa: E402
from gan_family import build, data_for, evaluate, samples_of  # noqa: E402

from hybridpgm.data import find_fashion_mnist, load_dataset  # noqa: E402
from hybridpgm.diagnostics.gan_metrics import inception_score, target_accuracy, train_classifier  # noqa: E402
from hybridpgm.generative.gan import gan_networks  # noqa: E402
from hybridpgm.infer import SVIObjective  # noqa: E402
from hybridpgm.infer.adversarial import GAN, IWGAN, adversarial_optim  # noqa: E402


def summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def fit(objective, x, steps: int, args, seed: int, batch_size: int | None = None) -> float:
    """Train; returns seconds per step."""
    start = time.perf_counter()
    hybridpgm.fit(objective, x, batch_size=batch_size or args.batch_size, max_steps=steps, seed=seed,
                  device=args.device, optim=adversarial_optim(args.lr), progress=False)
    return (time.perf_counter() - start) / steps


def gan_vs_iwgan(dataset: str, steps: int, batch_size: int, args, classifier=None) -> dict:
    out = {}
    for variant in ("gan", "iwgan"):
        metrics: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            objective = build(variant, dataset, args)
            x, test = data_for(variant, dataset, seed)
            per_step = fit(objective, x, steps, args, seed, batch_size)
            report = evaluate(objective, dataset, test, classifier)
            for key, value in [*report.items(), ("seconds_per_step", per_step)]:
                metrics.setdefault(key, []).append(float(value))
        out[variant] = {k: summary(v) for k, v in metrics.items()}
        print(dataset, variant, {k: round(v["mean"], 4) for k, v in out[variant].items()}, flush=True)
    out["iwgan_time_ratio_vs_gan"] = out["iwgan"]["seconds_per_step"]["mean"] / out["gan"]["seconds_per_step"]["mean"]
    return out


def fashion(args) -> dict:
    data = load_dataset("fashion-mnist", seed=0)
    classifier = train_classifier(data.train.x, data.train.y, num_steps=args.classifier_steps, device="cpu")
    out = {"classifier_test_accuracy": target_accuracy(classifier, data.test.x, data.test.y),
           "real_test_inception_score": inception_score(classifier, data.test.x)}
    for name, cls in (("gan", GAN), ("iwgan", IWGAN)):
        scores = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            gen, disc = gan_networks(args.fashion_arch, 784, args.noise_dim, (args.hidden * 2,) * 2,
                                     image_shape=(28, 28), out_activation="sigmoid")
            objective = cls(gen, disc)
            fit(objective, data.train.x, args.fashion_steps, args, seed)
            scores.append(inception_score(classifier, samples_of(objective, 2500).cpu()))
        out[name] = {"inception_score": summary(scores)}
        print("fashion-mnist", name, round(out[name]["inception_score"]["mean"], 4), flush=True)
    return out


def vae_vs_aavae(args) -> dict:
    out = {}
    for fraction in (0.1, 1.0):
        for name in ("vae", "aavae"):
            elbos = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                aavae = build("aavae", "digits", args)
                x, test = data_for("aavae", "digits", seed, train_fraction=fraction)
                if name == "vae":  # the same VAE trained on the ELBO alone
                    objective = SVIObjective(aavae.vae.model, aavae.vae.guide)
                else:
                    objective = aavae
                fit(objective, x, args.vae_steps, args, seed)
                aavae.vae.eval()
                test_x = test.x.to(next(aavae.vae.parameters()).device)
                elbos.append(aavae.vae.elbo(test_x, num_samples=10).mean().item())
            out[f"{name}_{int(fraction * 100)}pct"] = {"test_elbo": summary(elbos), "num_train": int(x.shape[0])}
            print("digits", name, fraction, round(statistics.fmean(elbos), 3), flush=True)
    return out


def ada_vs_source_only(args) -> dict:
    data = load_dataset("digits", seed=0)
    out = {}
    for name, weight in (("source_only", 0.0), ("ada", 1.0)):
        accs = []
        for seed in range(args.seeds):
            ada_args = argparse.Namespace(seed=seed, hidden=128, features=64, k=1, shift="rotate", lr=args.lr,
                                          batch_size=128, num_steps=args.ada_steps, device=args.device, quiet=True)
            ada = train_ada(data, weight, ada_args)
            device = next(ada.module.parameters()).device
            accs.append(target_accuracy(ada.predict, shift(data.test.x, "rotate").to(device), data.test.y.to(device)))
        out[name] = {"target_accuracy": summary(accs)}
        print("ada", name, round(statistics.fmean(accs), 4), flush=True)
    return out


def main(args) -> None:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    digits = load_dataset("digits", seed=0)
    classifier = train_classifier(digits.train.x, digits.train.y, num_steps=args.classifier_steps, device="cpu")
    payload = {
        "config": vars(args),
        "digits_classifier_test_accuracy": target_accuracy(classifier, digits.test.x, digits.test.y),
        "digits_real_test_inception_score": inception_score(classifier, digits.test.x),
        "ring": gan_vs_iwgan("ring", args.ring_steps, args.ring_batch_size, args),
        "digits": gan_vs_iwgan("digits", args.digits_steps, args.digits_batch_size, args, classifier),
    }
    try:
        find_fashion_mnist()
        have_fashion = args.fashion_steps > 0
    except Exception:
        have_fashion = False
    payload["fashion_mnist"] = fashion(args) if have_fashion else "skipped (not installed or --fashion-steps 0)"
    payload["vae_vs_aavae"] = vae_vs_aavae(args)
    payload["ada_vs_source_only"] = ada_vs_source_only(args)
    payload["total_seconds"] = time.perf_counter() - start
    write_result("gan_quality", payload, args.out)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ring-steps", type=int, default=2000)
    parser.add_argument("--digits-steps", type=int, default=2000)
    parser.add_argument("--fashion-steps", type=int, default=1000)
    parser.add_argument("--fashion-arch", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--ada-steps", type=int, default=600)
    parser.add_argument("--classifier-steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128, help="Fashion-MNIST, VAE/AAVAE")
    parser.add_argument("--ring-batch-size", type=int, default=256)
    parser.add_argument("--digits-batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=4, help="IWGAN importance samples")
    parser.add_argument("--fake-weight", type=float, default=1.0, help="AAVAE")
    parser.add_argument("--noise-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
