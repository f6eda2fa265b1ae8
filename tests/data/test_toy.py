"""The ring of Gaussians (hybridpgm.data.toy)."""

import math

import pytest
import torch

from hybridpgm.data.toy import ring_centers, ring_of_gaussians
from hybridpgm.errors import ConfigError


@pytest.mark.parametrize("num_modes,radius", [(8, 2.0), (5, 1.0)])
def test_centers_on_circle(num_modes, radius):
    c = ring_centers(num_modes, radius, dtype=torch.float64)
    assert c.shape == (num_modes, 2)
    assert torch.allclose(c.norm(dim=1), torch.full((num_modes,), radius, dtype=torch.float64))
    assert torch.allclose(c[1], radius * torch.tensor([math.cos(2 * math.pi / num_modes),
                                                       math.sin(2 * math.pi / num_modes)], dtype=torch.float64))


def test_samples_are_the_mixture():
    x, modes = ring_of_gaussians(40000, std=0.1, generator=torch.Generator().manual_seed(0), return_modes=True)
    assert x.shape == (40000, 2)
    freq = torch.bincount(modes, minlength=8).float() / 40000
    assert (freq - 0.125).abs().max() < 0.01  # ~6 standard errors
    resid = x - ring_centers()[modes]
    assert resid.mean(0).abs().max() < 0.005 and (resid.std(0) - 0.1).abs().max() < 0.003


def test_reproducible_and_checked():
    a = ring_of_gaussians(10, generator=torch.Generator().manual_seed(3))
    b = ring_of_gaussians(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ConfigError):
        ring_of_gaussians(0)
    with pytest.raises(ConfigError):
        ring_centers(0)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_return_modes_is_a_bool(value):
    """Before, return_modes="no" returned the modes too."""
    with pytest.raises(ConfigError, match=f"ring_of_gaussians return_modes must be True or False, got {value!r}"):
        ring_of_gaussians(5, return_modes=value)
