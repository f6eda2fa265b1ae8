"""The shared Bernoulli sampler (hybridpgm/energy/sampling.py)."""

import pytest
import torch

from hybridpgm.energy.sampling import bernoulli


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
