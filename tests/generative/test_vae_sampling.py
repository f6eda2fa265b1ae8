"""The importance-sampling estimates of a VAE are computed without a graph (hybridpgm/generative/vae_sampling.py).

Audit (audit_grad): ``elbo``, ``log_likelihood`` and ``log_weights`` run under ``torch.no_grad()``, so an ``x``
that requires grad got a result carrying no gradient to it, silently; ``vae.elbo(x).sum().backward()`` then raised
torch's "element 0 of tensors does not require grad".  They stay evaluation estimates (the differentiable bounds
are ``direct_elbo_loss`` and ``SVIObjective``); such an ``x`` is now refused, naming the method.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm import VAE
from hybridpgm.errors import ConfigError

CALLS = {
    "elbo": lambda vae, x, g: vae.elbo(x, num_samples=3, generator=g),
    "log_likelihood": lambda vae, x, g: vae.log_likelihood(x, num_samples=5, chunk_size=2, generator=g),
    "log_weights": lambda vae, x, g: vae.log_weights(x=x, num_samples=3, generator=g),
}


def _vae_and_data():
    torch.manual_seed(0)
    vae = VAE(4, 2, (5,), likelihood="gaussian").double().eval()
    return vae, torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", list(CALLS))
def test_an_x_that_requires_grad_is_refused_in_grad_mode(method):
    """Fails on the old code: the call returned a result without a graph."""
    vae, x = _vae_and_data()
    with pytest.raises(ConfigError, match=rf"VAE\.{method}: x requires grad, but the estimate is computed without "
                                          r"a graph.*x\.detach\(\).*direct_elbo_loss"):
        CALLS[method](vae, x.clone().requires_grad_(), torch.Generator().manual_seed(2))


@pytest.mark.parametrize("method", list(CALLS))
def test_the_value_is_computed_where_no_gradient_is_asked_for(method):
    """Guard (passes before and after): the common call (data, parameters requiring grad, grad mode on), and
    the same ``x`` requiring grad under ``torch.no_grad()``, give the same value, without a graph."""
    vae, x = _vae_and_data()
    assert all(p.requires_grad for p in vae.parameters())
    plain = CALLS[method](vae, x, torch.Generator().manual_seed(2))
    assert plain.grad_fn is None and not plain.requires_grad
    with torch.no_grad():
        quiet = CALLS[method](vae, x.clone().requires_grad_(), torch.Generator().manual_seed(2))
    torch.testing.assert_close(quiet, plain, rtol=0, atol=0)
