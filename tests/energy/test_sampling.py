"""The shared Bernoulli sampler and Gaussian noise (hybridpgm/energy/sampling.py)."""

import pytest
import torch

from hybridpgm.energy.sampling import bernoulli, standard_normal


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_draws_the_indicator_of_the_uniforms_below_the_probabilities(dtype):
    probs = torch.rand(40, 30, generator=torch.Generator().manual_seed(0)).to(dtype)
    torch.manual_seed(5)
    got = bernoulli(probs)
    torch.manual_seed(5)
    expected = (torch.rand_like(probs) < probs).to(dtype)
    assert got.dtype == dtype and torch.equal(got, expected)


def test_the_sample_carries_no_gradient_and_leaves_the_probabilities_alone():
    logits = torch.randn(6, 5, requires_grad=True)
    probs = torch.sigmoid(logits)
    before = probs.detach().clone()
    sample = bernoulli(probs)
    assert not sample.requires_grad and sample.grad_fn is None
    assert torch.equal(probs.detach(), before)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}


def test_the_frequency_matches_the_probability():
    torch.manual_seed(0)
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    mean = bernoulli(p.expand(200_000, 5)).mean(0)
    assert mean[0] == 0 and mean[-1] == 1
    torch.testing.assert_close(mean, p, atol=5e-3, rtol=0)  # over 4 standard errors (fixed seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_with_a_generator_the_draws_are_the_generators_uniforms_and_normals(dtype):
    """``generator=``: the indicator of the generator's uniforms below ``probs`` (the normals of it), the
    global stream untouched; ``None`` draws ``rand_like`` / ``randn_like`` of the global stream.  Before: no
    generator argument, and no ``standard_normal``."""
    probs = torch.rand(7, 5, generator=torch.Generator().manual_seed(0)).to(dtype).t()  # not contiguous
    torch.manual_seed(3)
    state = torch.get_rng_state()
    got = bernoulli(probs, generator=torch.Generator().manual_seed(4))
    noise = standard_normal(probs, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    expected = (torch.rand(5, 7, generator=torch.Generator().manual_seed(4), dtype=dtype) < probs).to(dtype)
    assert got.dtype == dtype and got.shape == probs.shape and torch.equal(got, expected)
    assert torch.equal(noise, torch.randn(5, 7, generator=torch.Generator().manual_seed(4), dtype=dtype))
    torch.manual_seed(5)
    got, noise = bernoulli(probs, generator=None), standard_normal(probs, generator=None)
    torch.manual_seed(5)
    expected = (torch.rand_like(probs) < probs).to(dtype)
    assert torch.equal(got, expected) and torch.equal(noise, torch.randn_like(probs))
