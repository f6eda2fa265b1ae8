"""RAISE's reverse chain does the work of one AIS chain: two ``V x H`` products and two softplus passes per
temperature.

Before, each temperature ran a sweep ``path.step(v_k, beta_k, beta_k, transition=True)`` (pre-activations of
``v_k``, an increment at ``(beta_k, beta_k)`` that is always 0 and was thrown away) and then a separate increment
``path.step(v_{k-1}, beta_{k-1}, beta_k, transition=False)``, whose pre-activations of ``v_{k-1}`` the next sweep
computed again: three products and four softplus passes.  Now the sweep from ``v_{k-1}`` returns the increment
at ``(beta_k, beta_{k-1})``, which is ``-Delta_k`` bit for bit, so the estimates must not move at all.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.energy import RBM
from hybridpgm.infer import RAISE
from tests.energy.brute_force import random_rbm

_PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
             torch.ops.aten.baddbmm.default}


class _Work(TorchDispatchMode):
    """Counts matrix-matrix products that read the RBM's weight (matched by storage) and softplus passes."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight.untyped_storage().data_ptr()
        self.products = 0
        self.softplus = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _PRODUCTS and any(isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == self.weight
                                     for a in args):
            self.products += 1
        if func is torch.ops.aten.softplus.default:
            self.softplus += 1
        return func(*args, **(kwargs or {}))


def _rbm(kind: str) -> RBM:
    if kind == "gaussian":
        torch.manual_seed(0)
        return RBM(6, 4, visible="gaussian", sigma=0.7, init_scale=0.5).double()
    return random_rbm(6, 4, seed=0)


def _work(rbm: RBM, num_steps: int) -> tuple[int, int]:
    v = torch.bernoulli(torch.full((3, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with _Work(rbm.weight) as mode:
        RAISE(num_chains=2, num_steps=num_steps)(rbm, v)
    return mode.products, mode.softplus


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_reverse_chain_costs_two_products_and_two_softplus_passes_per_temperature(kind):
    """Five more temperatures cost ten more products of the weight and ten more softplus passes (the old chain:
    15 and 20).  What RAISE does once per call (the free energy of the test points, the last increment) cancels
    in the difference."""
    rbm = _rbm(kind)
    (products_5, softplus_5), (products_10, softplus_10) = _work(rbm, 5), _work(rbm, 10)
    assert (products_10 - products_5, softplus_10 - softplus_5) == (10, 10)


def _reference_log_weights(rbm: RBM, v: torch.Tensor, betas: list[float], num_chains: int,
                           data: torch.Tensor | None) -> torch.Tensor:
    """The former reverse chain: a sweep at beta_k, then the increment at (beta_{k-1}, beta_k) of the new state."""
    path = rbm.annealing_path(data)
    start = v.repeat_interleave(num_chains, 0).to(path.dtype)
    total = torch.zeros(start.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for k in range(len(betas) - 1, 0, -1):
            _, start = path.step(start, betas[k], betas[k], transition=True)
            inc, _ = path.step(start, betas[k - 1], betas[k], transition=False)
            total += inc.to(torch.float64)
    return -total.reshape(-1, num_chains)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_steps", [1, 2, 37])
def test_log_weights_equal_the_two_step_chain_bit_for_bit(kind, dtype, num_steps):
    """Named guard (passes on the old code too): the one-step-per-temperature chain gives the former chain's
    log-weights exactly, with the same random draws, for both visible types and dtypes."""
    rbm = _rbm(kind).to(dtype)
    data = torch.bernoulli(torch.full((20, 6), 0.3, dtype=dtype), generator=torch.Generator().manual_seed(3))
    if kind == "gaussian":
        data = data + 0.1 * torch.randn(20, 6, dtype=dtype, generator=torch.Generator().manual_seed(4))
    v = data[:5]
    estimator = RAISE(num_chains=3, num_steps=num_steps)
    torch.manual_seed(5)
    got = estimator(rbm, v, data=data)
    after = torch.get_rng_state()
    torch.manual_seed(5)
    expected = _reference_log_weights(rbm, v, estimator.betas, 3, data)
    assert torch.equal(got.log_weights, expected)
    assert torch.equal(after, torch.get_rng_state())  # the same draws


def test_softplus_is_what_the_path_uses():
    """The counter above counts ``aten.softplus``: F.softplus dispatches to it (else the count test is vacuous)."""
    with _Work(torch.zeros(1)) as mode:
        F.softplus(torch.ones(2))
    assert mode.softplus == 1
