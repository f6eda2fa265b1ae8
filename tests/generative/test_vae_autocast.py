"""A VAE under :func:`torch.autocast`: the networks run in 16 bits, everything after their outputs (the guide's
:math:`z`, both densities, the likelihood) as in float32."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm import VAE
from hybridpgm.infer import IWAE, DirectTrace_ELBO
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture: one intra-op thread)

D, Z = 32, 4
X = torch.bernoulli(torch.full((16, D), 0.2), generator=torch.Generator().manual_seed(0))
Y = torch.randn(16, D, generator=torch.Generator().manual_seed(1))


def _shifted_vae(likelihood: str) -> VAE:
    """Guide means near 5 with standard deviations near 7e-3 (softplus(-5) + 1e-4): one bfloat16 unit at 5 is
    0.031, four standard deviations."""
    torch.manual_seed(0)
    vae = VAE(D, Z, (16,), likelihood=likelihood)
    with torch.no_grad():
        bias = vae.encoder[-1].bias
        bias[:Z] += 5.0
        bias[Z:] -= 5.0
    return vae


def _loss(vae, x, elbo, seed, dtype=None, reference=None):
    """``elbo``'s loss and the gradients of the encoder's last layer; under autocast in ``dtype``, or with
    ``reference`` the 16-bit dtype in which the networks alone run (their outputs cast to float32 after)."""
    if reference is not None:
        plain = type(vae)._net

        def net16(net, inp, role):
            with torch.autocast("cpu", dtype=reference):
                out = plain(vae, net, inp, role)
            return out.float()

        vae._net = net16
    pyro.clear_param_store()
    torch.manual_seed(seed)
    try:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = elbo.differentiable_loss(vae.model, vae.guide, x)
    finally:
        vae.__dict__.pop("_net", None)
    return loss, torch.autograd.grad(loss, [vae.encoder[-1].weight, vae.encoder[-1].bias])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("make_elbo", [Trace_ELBO, DirectTrace_ELBO, lambda: IWAE(num_particles=3)],
                         ids=["trace", "direct", "iwae"])
def test_vae_loss_under_autocast_is_the_float32_loss_of_the_16_bit_network_outputs(dtype, likelihood, make_elbo):
    """Found by an audit: the guide took the encoder's 16-bit output as it was, so ``z = loc + scale * eps`` and
    ``log q(z | x)`` ran in bfloat16/float16: with guide means near 5 and scales near 7e-3 the negative ELBO was
    off by +640 to +800 nats in bfloat16 (-50 to -85 in float16; NaN in float16 at means near 20 and scales near
    1.5e-4), against the loss of the same 16-bit network outputs taken on in float32."""
    vae = _shifted_vae(likelihood)
    x = X if likelihood == "bernoulli" else Y
    for seed in range(2):
        ref_loss, ref_grads = _loss(vae, x, make_elbo(), seed, reference=dtype)
        loss, grads = _loss(vae, x, make_elbo(), seed, dtype=dtype)
        assert loss.dtype == torch.float32 and torch.isfinite(ref_loss)
        torch.testing.assert_close(loss, ref_loss)
        for g, ref in zip(grads, ref_grads):
            torch.testing.assert_close(g, ref)


def test_vae_guide_and_sample_under_autocast_are_float32_and_a_float64_vae_stays_float64():
    vae = _shifted_vae("gaussian")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trace = pyro.poutine.trace(vae.guide).get_trace(Y)
        assert vae.sample(3).dtype == torch.float32
    trace.compute_log_prob()
    assert trace.nodes["z"]["value"].dtype == trace.nodes["z"]["log_prob"].dtype == torch.float32
    vae64 = _shifted_vae("gaussian").double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vae64.sample(3).dtype == torch.float64
        z = pyro.poutine.trace(vae64.guide).get_trace(Y.double()).nodes["z"]["value"]
    assert z.dtype == torch.float64
