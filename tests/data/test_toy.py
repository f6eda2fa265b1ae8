"""The ring of Gaussians (hybridpgm.data.toy)."""

import inspect
import math

import pytest
import torch

from hybridpgm.data.toy import ring_centers, ring_of_gaussians
from hybridpgm.errors import ConfigError
from tests import generator_contract as contract


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
    with pytest.raises(ConfigError, match=r"^ring_of_gaussians n must be a non-negative integer, got -1"):
        ring_of_gaussians(-1)
    with pytest.raises(ConfigError):
        ring_centers(0)


def test_no_draws_give_an_empty_result():
    """Found by an audit of the samplers: ``n=0`` was refused where every other sampler returns an empty
    result."""
    x, modes = ring_of_gaussians(0, generator=torch.Generator().manual_seed(3), return_modes=True)
    assert x.shape == (0, 2) and x.dtype == torch.float32 and modes.shape == (0,) and modes.dtype == torch.long
    assert ring_of_gaussians(0).shape == (0, 2)


def test_the_generator_contract():
    """Found by an audit of the samplers: ``generator=3`` ended in torch's raw TypeError."""
    contract.assert_generator_contract(lambda **kw: ring_of_gaussians(6, return_modes=True, **kw),
                                       "ring_of_gaussians generator")


@pytest.mark.parametrize("value", ["no", 1, None])
def test_return_modes_is_a_bool(value):
    """Before, return_modes="no" returned the modes too."""
    with pytest.raises(ConfigError, match=f"ring_of_gaussians return_modes must be True or False, got {value!r}"):
        ring_of_gaussians(5, return_modes=value)


def test_generator_and_return_modes_are_keyword_only_with_a_deprecation_period():
    """Found by an API audit: the generator was the fifth positional parameter (``ring_of_gaussians(n, 8, 2.0,
    0.05, g)``), where every other sampler takes it by keyword only.  The old positional call still answers, the
    same draws, with a FutureWarning naming what to pass by keyword."""
    params = inspect.signature(ring_of_gaussians).parameters
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in ("generator", "return_modes"))
    new = ring_of_gaussians(7, 8, 2.0, 0.05, generator=torch.Generator().manual_seed(1))
    with pytest.warns(FutureWarning, match=r"^ring_of_gaussians: pass generator= by keyword"):
        old = ring_of_gaussians(7, 8, 2.0, 0.05, torch.Generator().manual_seed(1))
    assert torch.equal(old, new)
    with pytest.warns(FutureWarning, match=r"^ring_of_gaussians: pass generator=, return_modes= by keyword"):
        old_x, old_modes = ring_of_gaussians(7, 8, 2.0, 0.05, torch.Generator().manual_seed(1), True)
    x, modes = ring_of_gaussians(7, 8, 2.0, 0.05, generator=torch.Generator().manual_seed(1), return_modes=True)
    assert torch.equal(old_x, x) and torch.equal(old_modes, modes) and torch.equal(x, new)


def test_centers_and_draws_follow_the_default_dtype_alike():
    """Found by a settings audit: ``ring_centers`` stayed float32 while ``ring_of_gaussians`` followed torch's
    default dtype (its noise), so under a float64 default the draws were float64 around float32-rounded centres
    and ``x - ring_centers()[modes]`` mixed the two.  Both follow the default dtype now."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        centers = ring_centers()
        x, modes = ring_of_gaussians(5, std=0.1, generator=torch.Generator().manual_seed(0), return_modes=True)
    finally:
        torch.set_default_dtype(before)
    assert centers.dtype == x.dtype == torch.float64 and torch.equal(centers, ring_centers(dtype=torch.float64))
    g = torch.Generator().manual_seed(0)  # the same draws: the modes, then the noise
    want_modes = torch.randint(8, (5,), generator=g)
    want = centers[want_modes] + 0.1 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    assert torch.equal(modes, want_modes) and torch.equal(x, want)  # around the float64 centres


def test_draws_are_the_same_cpu_tensors_under_a_meta_default_device():
    """Before, the draws from the CPU generator were made on torch's default device (``"meta"``: no values;
    ``"cuda"``: torch's raw "Expected a 'cuda' device type for generator")."""
    want = ring_of_gaussians(6, generator=torch.Generator().manual_seed(2), return_modes=True)
    torch.set_default_device("meta")
    try:
        got = ring_of_gaussians(6, generator=torch.Generator().manual_seed(2), return_modes=True)
    finally:
        torch.set_default_device(None)
    assert all(a.device.type == "cpu" and torch.equal(a, b) for a, b in zip(got, want))
