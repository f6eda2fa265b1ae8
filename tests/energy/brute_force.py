"""Brute-force helpers for the Boltzmann-machine tests (tiny models, double precision)."""

from __future__ import annotations

import itertools

import pytest
import torch

from hybridpgm.energy import DBM, RBM


def all_states(n: int) -> torch.Tensor:
    """Every binary vector of length ``n``, ``2**n x n`` (float64)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64).reshape(-1, n)


def random_rbm(num_visible: int, num_hidden: int, seed: int = 0, scale: float = 1.0, **kwargs) -> RBM:
    """An RBM in float64 with N(0, scale^2) weights and N(0, 0.5^2) biases."""
    torch.manual_seed(seed)
    rbm = RBM(num_visible, num_hidden, init_scale=scale, **kwargs).double()
    with torch.no_grad():
        rbm.visible_bias.normal_(0, 0.5)
        rbm.hidden_bias.normal_(0, 0.5)
    return rbm


def random_dbm(sizes, seed: int = 0, scale: float = 1.0) -> DBM:
    torch.manual_seed(seed)
    dbm = DBM(sizes, init_scale=scale).double()
    with torch.no_grad():
        for b in dbm.biases:
            b.normal_(0, 0.5)
    return dbm


def rbm_joint_log_weights(rbm: RBM) -> torch.Tensor:
    """``-E(v, h)`` for every (v, h), shape ``2**V x 2**H``, by brute force from the energy formula."""
    v, h = all_states(rbm.num_visible), all_states(rbm.num_hidden)
    w, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    return v @ w @ h.T + (v @ b).unsqueeze(1) + (h @ c).unsqueeze(0)


def dbm_joint_log_weights(dbm: DBM) -> torch.Tensor:
    """``-E(x)`` for every joint state, flattened over the layers' product (v slowest)."""
    states = [all_states(n) for n in dbm.sizes]
    out = []
    for combo in itertools.product(*[range(s.shape[0]) for s in states]):
        x = [states[l][i] for l, i in enumerate(combo)]
        e = sum(x[l] @ dbm.biases[l].detach() for l in range(len(x)))
        e = e + sum(x[l] @ dbm.weights[l].detach() @ x[l + 1] for l in range(len(x) - 1))
        out.append(e)
    return torch.stack(out).reshape([s.shape[0] for s in states])


def total_variation(samples: torch.Tensor, probs: torch.Tensor) -> float:
    """TV distance between the empirical distribution of binary ``samples`` (``N x n``) and
    ``probs`` over :func:`all_states` order (bit 0 most significant)."""
    n = samples.shape[-1]
    index = (samples.long() * (2 ** torch.arange(n - 1, -1, -1))).sum(-1)
    empirical = torch.bincount(index, minlength=2**n).double() / samples.shape[0]
    return float((empirical - probs).abs().sum() / 2)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run a module's tiny-matrix work on one thread: on a shared 2-core machine
    intra-op threading makes these small products 10x slower, never faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
