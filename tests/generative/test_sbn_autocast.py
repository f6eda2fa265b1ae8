"""A sigmoid belief net's samples and importance-sampled log-likelihood, and its Gibbs sampler, under
:func:`torch.autocast`: run with autocast off, so they give what they give outside it, in the net's dtype."""

import pytest
import torch

from hybridpgm.generative import SBNGibbs, SigmoidBeliefNet


def _sbn() -> SigmoidBeliefNet:
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([64, 32, 16])
    with torch.no_grad():
        for p in sbn.parameters():
            p.mul_(4)  # sharp conditionals: logits of tens, where bfloat16 rounds by 0.06 to 0.25
    return sbn


def _data() -> torch.Tensor:
    return torch.bernoulli(torch.full((20, 64), 0.3), generator=torch.Generator().manual_seed(1))


def _both(fn):
    """``fn()`` outside autocast and under bfloat16 autocast."""
    plain = fn()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return plain, fn()


def test_log_likelihood_under_bf16_autocast_is_the_float32_estimate():
    """Found by an audit: the importance-sampled estimate ran the decoders in bfloat16 under autocast, 0.25 nats
    off on a row of this net (0.014 on average).  Now the same draws give the float32 numbers exactly."""
    sbn, x = _sbn(), _data()
    plain, got = _both(lambda: sbn.log_likelihood(x, num_samples=200, generator=torch.Generator().manual_seed(5)))
    assert got.dtype == torch.float32 and torch.equal(got, plain)


def test_sample_under_bf16_autocast_is_the_float32_sample():
    """Before: bfloat16 samples, 12 of the 3200 units drawn otherwise for this seed."""
    sbn = _sbn()
    plain, got = _both(lambda: sbn.sample(50, generator=torch.Generator().manual_seed(3)))
    assert got.dtype == torch.float32 and torch.equal(got, plain)


@pytest.mark.parametrize("init", ["guide", "zeros"])
def test_gibbs_sample_under_bf16_autocast_is_the_float32_sample(init):
    """Before: bfloat16 layers, 29 and 14 units drawn otherwise (init="guide")."""
    gibbs, x = SBNGibbs(_sbn()), _data()
    plain, got = _both(lambda: gibbs.sample(x, 3, warmup=5, init=init, seed=4))
    assert [h.dtype for h in got.layers] == [torch.float32] * 2
    assert all(torch.equal(a, b) for a, b in zip(got.layers, plain.layers))


def test_gibbs_sweep_and_full_conditional_under_bf16_autocast_are_the_float32_ones():
    gibbs, x = SBNGibbs(_sbn()), _data()
    start = [torch.bernoulli(torch.full((20, n), 0.5), generator=torch.Generator().manual_seed(6)) for n in (32, 16)]
    plain, got = _both(lambda: gibbs.sweep(x, [h.clone() for h in start], generator=torch.Generator().manual_seed(7)))
    assert all(b.dtype == torch.float32 and torch.equal(a, b) for a, b in zip(plain, got))
    plain, got = _both(lambda: gibbs.full_conditional(x, start, 1, 3))
    assert got.dtype == torch.float32 and torch.equal(got, plain)
