"""DBM log p(v) (hybridpgm/energy/dbm_likelihood.py): value and gradient against every state of a tiny DBM
enumerated here with plain differentiable operations."""

from __future__ import annotations

import pytest
import torch

from tests.energy.brute_force import all_states, random_dbm, single_thread  # noqa: F401

SIZES = [[3, 2, 2], [2, 3, 2, 2], [4, 3]]


def _brute_force(dbm, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\log \sum_h e^{-E(v,h)}` for the rows of ``v`` and :math:`\log Z`, from :math:`-E(x)` of every
    joint state, differentiable in the DBM's parameters."""
    joint = all_states(sum(dbm.sizes))  # v, the slowest units, first
    x = joint.split(dbm.sizes, -1)
    log_w = sum(x[l] @ dbm.biases[l] for l in range(len(x)))
    log_w = log_w + sum(((x[l] @ dbm.weights[l]) * x[l + 1]).sum(-1) for l in range(len(x) - 1))
    per_visible = log_w.reshape(2 ** dbm.sizes[0], -1)  # rows in all_states(V) order
    index = (v.long() * 2 ** torch.arange(v.shape[-1] - 1, -1, -1)).sum(-1)
    return torch.logsumexp(per_visible, 1)[index], torch.logsumexp(log_w, 0)


def _brute_force_log_likelihood(dbm, v: torch.Tensor) -> torch.Tensor:
    unnormalized, log_z = _brute_force(dbm, v)
    return unnormalized - log_z


def _data(dbm, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((7, dbm.sizes[0]), 0.5, dtype=torch.float64), generator=g)


@pytest.mark.parametrize("sizes", SIZES)
def test_log_likelihood_and_its_gradient_match_brute_force(sizes):
    """``log_likelihood`` ran under ``no_grad`` with a constant log Z: ``.backward()`` raised torch's
    'element 0 of tensors does not require grad'."""
    dbm = random_dbm(sizes, seed=1)
    v = _data(dbm)
    params = list(dbm.parameters())
    got = dbm.log_likelihood(v)
    want = _brute_force_log_likelihood(dbm, v)
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    assert got.requires_grad
    grads = torch.autograd.grad(got.mean(), params)
    expected = torch.autograd.grad(want.mean(), params)
    assert max(float(g.abs().max()) for g in expected) > 1e-3  # not vacuous
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_maximum_likelihood_backward_fills_every_parameters_gradient():
    """``(-dbm.log_likelihood(x).mean()).backward()`` as documented, against brute force."""
    dbm = random_dbm([2, 3, 2, 2], seed=2)
    v = _data(dbm, seed=3)
    (-dbm.log_likelihood(v).mean()).backward()
    expected = torch.autograd.grad(-_brute_force_log_likelihood(dbm, v).mean(), list(dbm.parameters()))
    for p, b in zip(dbm.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, b, rtol=1e-10, atol=1e-12)


def test_the_chunked_sum_over_the_hidden_layers_has_the_same_gradient():
    """``unnormalized_log_prob`` in several chunks (each recomputed in the backward pass) against brute force."""
    dbm = random_dbm([2, 2, 3, 1, 2], seed=4)
    v = _data(dbm, seed=5)
    params = list(dbm.parameters())
    chunked = dbm.unnormalized_log_prob(v, chunk_size=3)  # 2**5 even hidden states in 11 chunks
    want = _brute_force(dbm, v)[0]
    torch.testing.assert_close(chunked.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(chunked.sum(), params)
    for a, b in zip(grads, torch.autograd.grad(want.sum(), params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_given_constant_log_z_leaves_the_gradient_of_the_unnormalized_part():
    """A known log Z (a number, or a tensor without a graph) is a constant, as documented."""
    dbm = random_dbm([3, 2, 2], seed=6)
    v = _data(dbm, seed=7)
    params = list(dbm.parameters())
    log_z = dbm.log_partition().detach()
    got = torch.autograd.grad(dbm.log_likelihood(v, log_z).sum(), params)
    want = torch.autograd.grad(_brute_force(dbm, v)[0].sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with_graph = dbm.log_likelihood(v, dbm.log_partition(differentiable=True))
    expected = torch.autograd.grad(_brute_force_log_likelihood(dbm, v).sum(), params)
    for a, b in zip(torch.autograd.grad(with_graph.sum(), params), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_no_grad_gives_the_same_value_without_a_graph():
    """Guard (passes before and after): outside grad mode the value is the same and carries no graph."""
    dbm = random_dbm([3, 2, 2], seed=8)
    v = _data(dbm, seed=9)
    with torch.no_grad():
        got = dbm.log_likelihood(v)
    assert not got.requires_grad
    torch.testing.assert_close(got, _brute_force_log_likelihood(dbm, v).detach(), rtol=1e-12, atol=1e-12)
