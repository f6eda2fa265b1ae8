"""Training-step time: hybridpgm's VAE through ``fit`` against a hand-written
PyTorch VAE of the same architecture computing the same single-sample ELBO.

Both use Adam, the same MLPs (x -> hidden -> 2z, z -> hidden -> x), a
Bernoulli likelihood and a reparameterized Gaussian guide; the hybridpgm side
runs the Pyro model/guide under ``Trace_ELBO`` inside ``hybridpgm.fit``
(batching, per-step loss sync, history).  The two are timed in alternating
rounds in the same process; the median step time of each and their ratio go
to ``results/vae_step.json``.

    python benchmarks/vae_step.py                       # 784-400-50, batch 128
    python benchmarks/vae_step.py --rounds 2 --steps 5  # quick
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
import torch.nn.functional as F

import hybridpgm
from hybridpgm.nn import mlp

from common import median_ms, write_result


class PlainVAE(torch.nn.Module):
    """Reference: the same VAE written directly in PyTorch."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int):
        super().__init__()
        self.encoder = mlp([x_dim, hidden, 2 * z_dim])
        self.decoder = mlp([z_dim, hidden, x_dim])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        return -(log_lik + log_prior - log_q).mean()


def time_plain(x: torch.Tensor, model: PlainVAE, opt, steps: int, batch: int, device) -> list[float]:
    times = []
    for s in range(steps):
        xb = x[(s * batch) % len(x):][:batch].to(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(xb)
        loss.backward()
        opt.step()
        loss.item()  # fit syncs the loss every step too
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def time_hybridpgm(x: torch.Tensor, vae: hybridpgm.VAE, steps: int, batch: int, device, seed: int) -> list[float]:
    objective = hybridpgm.SVIObjective(vae.model, vae.guide)
    result = hybridpgm.fit(objective, x, batch_size=batch, max_steps=steps, epochs=10**6, device=device,
                           progress=False, seed=seed, optim=functools.partial(torch.optim.Adam, lr=1e-3))
    return [batch / eps for eps in result.history.examples_per_second]


def main(args: argparse.Namespace) -> dict:
    device = hybridpgm.train.device.resolve_device(args.device)
    torch.manual_seed(args.seed)
    x = torch.bernoulli(torch.full((args.batch_size * 8, args.x_dim), 0.3))
    torch.manual_seed(args.seed)
    plain = PlainVAE(args.x_dim, args.z_dim, args.hidden).to(device)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    vae = hybridpgm.VAE(args.x_dim, args.z_dim, [args.hidden])
    ours, reference = [], []
    time_plain(x, plain, plain_opt, 3, args.batch_size, device)  # warm-up
    time_hybridpgm(x, vae, 3, args.batch_size, device, args.seed)
    for r in range(args.rounds):  # alternate so both see the same machine load
        reference += time_plain(x, plain, plain_opt, args.steps, args.batch_size, device)
        ours += time_hybridpgm(x, vae, args.steps, args.batch_size, device, args.seed + r)
    result = {
        "architecture": f"{args.x_dim}-{args.hidden}-{args.z_dim}",
        "batch_size": args.batch_size,
        "device": str(device),
        "steps_timed_each": len(ours),
        "reference": "hand-written PyTorch VAE, same architecture and single-sample ELBO",
        "hybridpgm_median_step_ms": median_ms(ours),
        "reference_median_step_ms": median_ms(reference),
        "ratio_hybridpgm_over_reference": median_ms(ours) / median_ms(reference),
        "target_ratio": 1.3,
    }
    write_result("vae_step", result, args.out)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x-dim", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
