"""Bernoulli and Gaussian RBMs (:mod:`hybridpgm.energy.rbm`, :mod:`hybridpgm.energy.rbm_likelihood`) and DBMs
(:mod:`hybridpgm.energy.dbm_likelihood`) with seeded random parameters against enumeration in float64.

Every case is drawn from ``random.Random(seed)`` and a ``torch.Generator`` seeded from it (the constructors'
own initialisation runs under ``torch.random.fork_rng``, so the global RNG is left as it was); failures name the
seed. RBMs with V, H <= 6 and weight scales up to 15: exact log Z, free energy, log-likelihood, p(h|v), p(v|h),
exact pseudo-log-likelihood; DBMs of 2-4 layers (<= 12 units): exact log Z, log-likelihood, unnormalised
log-probability; Gaussian-visible RBMs: exact log Z and log-likelihood against the closed form
:math:`\\log Z = \\log \\sum_h \\exp(c^\\top h + \\sum_i ((b_i + \\sigma W_i h)^2 - b_i^2) / 2\\sigma^2)
+ V \\log(\\sqrt{2\\pi}\\sigma)`. This is the FUZZ audit's ``fuzz_rbm.py`` and ``fuzz_grbm.py`` (session 41),
float64 only; ``pytest -m slow`` runs its case counts.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from hybridpgm.energy import DBM, RBM

DT = torch.float64
TOL = 1e-9
#: sigma values float32 does not hold (0.3, 0.7, 1.3: a float64 model built from float32 roundings answered for
#: another sigma before energy/rbm_sigma.py, FUZZ finding 1) and ones it holds (0.25, 1.0, 2.5)
SIGMAS = (0.3, 0.7, 1.3, 0.25, 1.0, 2.5)


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=DT).reshape(-1, n)


def mismatch(name: str, got: torch.Tensor, want: torch.Tensor) -> list[str]:
    if got.shape == want.shape and bool(((got - want).abs() <= TOL * (1 + want.abs())).all()):
        return []
    return [f"{name}: {got.tolist()} != {want.tolist()}"]


def rbm_case(seed: int) -> list[str]:
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    V, H, sc = rng.randint(1, 6), rng.randint(1, 6), rng.choice([0.1, 1.0, 4.0, 15.0])
    W, b, c = (torch.randn(*shape, generator=g, dtype=DT) * sc for shape in [(V, H), (V,), (H,)])
    with torch.random.fork_rng(devices=[]):
        rbm = RBM(V, H).double()
    with torch.no_grad():
        rbm.weight.copy_(W), rbm.visible_bias.copy_(b), rbm.hidden_bias.copy_(c)
    vs, hs = all_states(V), all_states(H)
    neg_energy = vs @ W @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    log_z = torch.logsumexp(neg_energy.reshape(-1), 0)
    free = -torch.logsumexp(neg_energy, 1)
    v = vs.T.contiguous().T if rng.random() < 0.3 and V > 1 else vs
    tag = f"seed {seed} RBM V={V} H={H} scale={sc}"
    fails = mismatch(f"{tag} log Z", rbm.log_partition("exact"), log_z)
    fails += mismatch(f"{tag} free energy", rbm.free_energy(v), free)
    fails += mismatch(f"{tag} log-likelihood", rbm.log_likelihood(v), -free - log_z)
    fails += mismatch(f"{tag} p(h|v)", rbm.hidden(v).base_dist.probs, torch.sigmoid(vs @ W + c))
    fails += mismatch(f"{tag} p(v|h)", rbm.visible(hs).base_dist.probs, torch.sigmoid(hs @ W.T + b))
    log_p, pll = -free - log_z, torch.zeros(len(vs), dtype=DT)
    for i in range(V):
        other = vs.clone()
        other[:, i] = 1 - other[:, i]
        idx = (other * 2 ** torch.arange(V - 1, -1, -1, dtype=DT)).sum(1).long()
        pll += log_p - torch.logaddexp(log_p, log_p[idx])
    return fails + mismatch(f"{tag} exact pseudo-log-likelihood", rbm.pseudo_log_likelihood(v, exact=True), pll)


def dbm_case(seed: int) -> list[str]:
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    layers = rng.randint(2, 4)
    sizes = [rng.randint(1, 4) for _ in range(layers)]
    while sum(sizes) > 12:
        sizes[rng.randrange(layers)] = 1
    sc = rng.choice([0.1, 1.0, 4.0])
    with torch.random.fork_rng(devices=[]):
        dbm = DBM(sizes).double()
    with torch.no_grad():
        for p in [*dbm.weights, *dbm.biases]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * sc)
    weights, biases = [w.detach().clone() for w in dbm.weights], [x.detach().clone() for x in dbm.biases]
    layer_states = torch.split(all_states(sum(sizes)), sizes, dim=1)
    neg_energy = sum(x @ bias for x, bias in zip(layer_states, biases))
    for k, w in enumerate(weights):
        neg_energy = neg_energy + ((layer_states[k] @ w) * layer_states[k + 1]).sum(-1)
    log_z = torch.logsumexp(neg_energy, 0)
    code = (layer_states[0] * 2 ** torch.arange(sizes[0] - 1, -1, -1, dtype=DT)).sum(1).long()
    unnormalized = torch.stack([torch.logsumexp(neg_energy[code == k], 0) for k in range(2 ** sizes[0])])
    vs, tag = all_states(sizes[0]), f"seed {seed} DBM sizes={sizes} scale={sc}"
    fails = mismatch(f"{tag} log Z", dbm.log_partition("exact"), log_z)
    fails += mismatch(f"{tag} log-likelihood", dbm.log_likelihood(vs), unnormalized - log_z)
    return fails + mismatch(f"{tag} unnormalized log-probability", dbm.unnormalized_log_prob(vs), unnormalized)


def gaussian_rbm_case(seed: int) -> list[str]:
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    V, H, sigma, sc = rng.randint(1, 6), rng.randint(1, 8), rng.choice(SIGMAS), rng.choice([0.1, 1.0, 3.0])
    with torch.random.fork_rng(devices=[]):
        rbm = RBM(V, H, visible="gaussian", sigma=sigma).double()
    W, b, c = torch.randn(V, H, generator=g, dtype=DT) * sc, torch.randn(V, generator=g, dtype=DT), \
        torch.randn(H, generator=g, dtype=DT) * sc
    with torch.no_grad():
        rbm.weight.copy_(W), rbm.visible_bias.copy_(b), rbm.hidden_bias.copy_(c)
    hs = all_states(H)
    mean = b + sigma * (hs @ W.T)  # [2^H, V]
    log_w = hs @ c + ((mean ** 2 - b ** 2) / (2 * sigma ** 2)).sum(1) + V * math.log(math.sqrt(2 * math.pi) * sigma)
    log_z = torch.logsumexp(log_w, 0)
    v = torch.randn(5, V, generator=g, dtype=DT) * 2
    neg_energy = -((v[:, None, :] - b) ** 2).sum(-1) / (2 * sigma ** 2) + (v / sigma) @ W @ hs.T + hs @ c
    tag = f"seed {seed} Gaussian RBM V={V} H={H} sigma={sigma} scale={sc}"
    fails = mismatch(f"{tag} log Z", rbm.log_partition("exact"), log_z)
    return fails + mismatch(f"{tag} log-likelihood", rbm.log_likelihood(v), torch.logsumexp(neg_energy, 1) - log_z)


CASES = {"rbm": rbm_case, "dbm": dbm_case, "gaussian_rbm": gaussian_rbm_case}


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("kind", sorted(CASES))
def test_matches_enumeration(kind, seed):
    fails = CASES[kind](seed)
    assert not fails, "\n".join(fails[:5])


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_matches_enumeration_many(kind):
    fails = [f for seed in range(10_000, 10_400 if kind != "gaussian_rbm" else 10_200) for f in CASES[kind](seed)]
    assert not fails, "\n".join(fails[:5])
