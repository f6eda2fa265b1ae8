"""Brute-force enumeration for tiny sigmoid belief nets (shared by the SBN tests).

Everything here is written directly from the definitions, independently of
the library's enumeration code, and differentiable in the SBN's parameters.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F


@pytest.fixture(autouse=True)
def single_thread():
    """Run on one intra-op thread: these tests use many tiny tensors, for which
    thread hand-offs cost more than the work (and the test machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_sbn(sizes, seed, scale=1.5, guide_scale=None):
    """A SigmoidBeliefNet with N(0, scale^2) weights (guide weights N(0, guide_scale^2))."""
    from hybridpgm.generative import SigmoidBeliefNet

    torch.manual_seed(seed)
    sbn = SigmoidBeliefNet(sizes)
    with torch.no_grad():
        for p in sbn.model_parameters():
            p.normal_(0.0, scale)
        for p in sbn.guide_parameters():
            p.normal_(0.0, scale if guide_scale is None else guide_scale)
    return sbn


def binary(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.5), generator=g)


def all_binary(d):
    """Every binary vector of length d: ``[2**d, d]``."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


def mc_check(estimates, exact, z_max=4.5):
    """Assert that the mean of per-seed estimates ``[R, P]`` matches ``exact`` ``[P]``
    within ``z_max`` Monte Carlo standard errors, component-wise."""
    estimates = torch.as_tensor(estimates)
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    z = (mean - exact).abs() / (se + 1e-6 * (1 + exact.abs()))
    assert z.max() < z_max, f"max z-score {z.max():.2f}: mean {mean}, exact {exact}, se {se}"
    return z


def flat_grads(loss, params):
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(gs, params)])


def bern(value, logits):
    """log Bernoulli(value; sigmoid(logits)) summed over the last dim."""
    return (value * F.logsigmoid(logits) + (1 - value) * F.logsigmoid(-logits)).sum(-1)


def configurations(sbn):
    """Every joint hidden configuration: a list (over layers) of ``[S, H_l]`` tensors."""
    sizes = sbn.layer_sizes[1:]
    rows = list(itertools.product([0.0, 1.0], repeat=sum(sizes)))
    flat = torch.tensor(rows)
    out, start = [], 0
    for s in sizes:
        out.append(flat[:, start : start + s])
        start += s
    return out


def log_joint(sbn, x, hs):
    """log p(x, h) for x ``[B, D]`` and each configuration: ``[S, B]``."""
    L = sbn.num_layers
    lp = bern(hs[-1], sbn.prior_logits).unsqueeze(-1)
    for l in range(L, 1, -1):
        lp = lp + bern(hs[l - 2], sbn.decoders[l - 1](hs[l - 1])).unsqueeze(-1)
    logits = sbn.decoders[0](hs[0])  # [S, D]
    return lp + bern(x.unsqueeze(0), logits.unsqueeze(1))


def log_guide(sbn, x, hs):
    """log q(h | x): ``[S, B]``."""
    lq = 0.0
    below = x.unsqueeze(0)  # [1, B, D]
    for l in range(1, sbn.num_layers + 1):
        h = hs[l - 1].unsqueeze(1)  # [S, 1, H]
        lq = lq + bern(h, sbn.encoders[l - 1](below))
        below = h
    return lq


def log_marginal(sbn, x):
    """Exact log p(x): ``[B]``."""
    return torch.logsumexp(log_joint(sbn, x, configurations(sbn)), 0)


def elbo(sbn, x):
    """Exact ELBO per datapoint, ``[B]``."""
    hs = configurations(sbn)
    lp, lq = log_joint(sbn, x, hs), log_guide(sbn, x, hs)
    return (lq.exp() * (lp - lq)).sum(0)


def iw_bound_2(sbn, x):
    """Exact E[L_2] (importance-weighted bound with K = 2) per datapoint, ``[B]``."""
    hs = configurations(sbn)
    lp, lq = log_joint(sbn, x, hs), log_guide(sbn, x, hs)
    lw = lp - lq  # [S, B]
    pair = torch.logaddexp(lw.unsqueeze(0), lw.unsqueeze(1)) - math.log(2)  # [S, S, B]
    weight = (lq.unsqueeze(0) + lq.unsqueeze(1)).exp()
    return (weight * pair).sum((0, 1))


def posterior(sbn, x):
    """p(h | x) for every configuration: ``[S, B]``."""
    lp = log_joint(sbn, x, configurations(sbn))
    return (lp - torch.logsumexp(lp, 0)).exp()


def grads(value, params):
    return torch.autograd.grad(value, params, allow_unused=True)


def deterministic_guide_sbn():
    """A float64 ``[6, 4, 3]`` SBN (seed 5) whose guide is deterministic (encoder logits +100): runs that draw
    their random numbers in different orders (micro-batches, ranks) see the same latents."""
    sbn = random_sbn([6, 4, 3], 5, scale=1.0).double()
    with torch.no_grad():
        for encoder in sbn.encoders:
            encoder.weight.zero_(), encoder.bias.fill_(100.0)
    return sbn
