"""SBNGibbs.sweep computes each layer's prior logits once per layer, not once per unit.

Before, the prior logits of a non-top layer (a matrix product with the layer above) were recomputed for every unit
of the layer, though that layer's scan never changes the layer above. The states must stay the same, bit for bit.
"""

import pytest
import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.generative import SBNGibbs
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401

_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
            torch.ops.aten.baddbmm.default}


class _CountMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in _MATMULS
        return func(*args, **(kwargs or {}))


def _reference_sweep(sbn, x, hs, generator, hoist=False):
    """The systematic scan with the prior logits recomputed for every unit (the sweep before the fix): the same
    uniforms in the same order and shapes. ``hoist``: computed once per layer whatever the inputs (the naive fix)."""

    def prior_of(layer, h):
        return sbn.prior_logits.expand_as(h) if layer == sbn.num_layers else sbn.decoders[layer](hs[layer])

    with torch.no_grad():
        for layer in range(1, sbn.num_layers + 1):
            below = x if layer == 1 else hs[layer - 2]
            dec, h = sbn.decoders[layer - 1], hs[layer - 1]
            z = dec(h)
            once = prior_of(layer, h)
            for j in range(h.shape[-1]):
                w = dec.weight[:, j]
                z0 = z - h[..., j : j + 1] * w
                z1 = z0 + w
                child = ((below * z1 - F.softplus(z1)) - (below * z0 - F.softplus(z0))).sum(-1)
                logit = (once if hoist else prior_of(layer, h))[..., j] + child
                u = torch.rand(logit.shape, generator=generator, dtype=logit.dtype, device=logit.device)
                new = (u < torch.sigmoid(logit)).to(h.dtype)
                z = z0 + new.unsqueeze(-1) * w
                h[..., j] = new
    return hs


def _states(sizes, shape, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.bernoulli(torch.full(shape + (h,), 0.5), generator=g) for h in sizes[1:]]


@pytest.mark.parametrize("sizes", [[6, 5, 4, 3], [8, 16, 12], [4, 7]])
def test_a_sweep_runs_two_matmuls_per_layer_below_the_top_and_one_at_the_top(sizes):
    """Fails before: ``1 + H_l`` matrix products for each non-top layer ``l`` (12 instead of 5 for
    ``[6, 5, 4, 3]``, 18 instead of 3 for ``[8, 16, 12]``; a single layer runs one either way)."""
    sbn = random_sbn(sizes, 0)
    x = binary(5, sizes[0], 1).expand(2, 5, sizes[0])
    hs = _states(sizes, (2, 5), 2)
    with _CountMatmuls() as mode:
        SBNGibbs(sbn).sweep(x, hs, generator=torch.Generator().manual_seed(3))
    assert mode.count == 2 * (len(sizes) - 1) - 1


@pytest.mark.parametrize("sizes", [[6, 5, 4, 3], [8, 16, 12], [4, 7]])
def test_sweeps_are_bit_identical_to_the_per_unit_prior(sizes):
    """Guard (passes before and after): every state of several sweeps equals the per-unit recomputation's."""
    sbn = random_sbn(sizes, 4)
    x = binary(5, sizes[0], 5).expand(3, 5, sizes[0])
    got, want = _states(sizes, (3, 5), 6), _states(sizes, (3, 5), 6)
    g_got, g_want = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(4):
        SBNGibbs(sbn).sweep(x, got, generator=g_got)
        _reference_sweep(sbn, x, want, g_want)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_aliased_layers_still_see_the_layer_above_change():
    """Guard: where the caller passes one tensor as two equally wide layers, the layer above changes as the lower
    one is updated, so its prior is recomputed per unit as before (same states as the reference)."""
    sbn = random_sbn([5, 8, 8], 8)
    x = binary(64, 5, 9)
    shared, ref, naive = (torch.zeros(64, 8) for _ in range(3))
    got = SBNGibbs(sbn).sweep(x, [shared, shared], generator=torch.Generator().manual_seed(1))
    want = _reference_sweep(sbn, x, [ref, ref], torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    hoisted = _reference_sweep(sbn, x, [naive, naive], torch.Generator().manual_seed(1), hoist=True)
    assert not torch.equal(want[0], hoisted[0])  # the aliasing matters: hoisting regardless would be wrong here


def test_sample_is_unchanged_for_a_seed():
    """Guard: ``sample`` (which runs ``sweep``) keeps the same samples for a seed as the per-unit sweep."""
    sizes = [6, 5, 4]
    sbn = random_sbn(sizes, 10)
    x = binary(4, 6, 11)
    got = SBNGibbs(sbn).sample(x, 3, warmup=2, num_chains=2, init="zeros", seed=12).layers
    gen = torch.Generator().manual_seed(12)
    hs = [torch.zeros(2, 4, h) for h in sizes[1:]]
    xs = x.expand(2, 4, 6)
    kept = [[] for _ in hs]
    for _ in range(2):
        _reference_sweep(sbn, xs, hs, gen)
    for _ in range(3):
        _reference_sweep(sbn, xs, hs, gen)
        for k, h in zip(kept, hs):
            k.append(h.clone())
    assert all(torch.equal(a, torch.stack(k)) for a, k in zip(got, kept))
