"""Where the VAE's direct ELBO leaves its Bernoulli fast path (hybridpgm/generative/vae_direct.py,
``_log_likelihood``): a subclass's own ``_likelihood``, and a decoder whose output broadcasts against ``x``.

Review A, session 41: both conditions of the fast path were untested (dropping either passed the suite).  A
subclass that overrides ``_likelihood`` must be scored with it, as its traced ``model`` is; a decoder output of
another shape than ``x`` keeps the distribution's broadcasting (``binary_cross_entropy_with_logits`` refuses it)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

import hybridpgm
from hybridpgm.generative.vae_direct import VAEDirectELBO


class TemperedVAE(hybridpgm.VAE):
    """A Bernoulli VAE whose likelihood is that of the logits halved."""

    def _likelihood(self, out, validate=None):
        return dist.Bernoulli(logits=out / 2, validate_args=validate).to_event(1)


def _loss_and_grads(vae, x, route=None, monkeypatch=None):
    if route is not None:
        monkeypatch.setattr(VAEDirectELBO, "_log_likelihood", route)
    torch.manual_seed(3)
    loss = vae.direct_elbo_loss(x, 40)
    return loss.detach(), torch.autograd.grad(loss, list(vae.parameters()))


def _distribution_route(self, out, x):
    return self._likelihood(out, validate=False).log_prob(x)


def _data():
    return torch.bernoulli(torch.full((8, 6), 0.4), generator=torch.Generator().manual_seed(0))


def test_a_subclass_likelihood_is_the_one_scored(monkeypatch):
    """Its loss is that of the traced program (Trace_ELBO on model/guide, same draw)."""
    torch.manual_seed(0)
    vae, x = TemperedVAE(6, 2, [5]), _data()
    loss, grads = _loss_and_grads(vae, x)
    torch.manual_seed(3)
    traced = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, 40)
    assert torch.allclose(loss, traced.detach(), rtol=1e-6, atol=0)
    other, other_grads = _loss_and_grads(vae, x, _distribution_route, monkeypatch)
    assert torch.equal(loss, other) and all(torch.equal(a, b) for a, b in zip(grads, other_grads))


def test_a_decoder_output_that_broadcasts_keeps_the_distribution_broadcasting(monkeypatch):
    """A decoder of one logit per row ([B, 1] against x [B, 6]) is scored as Bernoulli(logits).log_prob(x)."""
    torch.manual_seed(0)
    vae, x = hybridpgm.VAE(6, 2, [5]), _data()
    vae.decoder = torch.nn.Linear(2, 1)
    loss, grads = _loss_and_grads(vae, x)
    other, other_grads = _loss_and_grads(vae, x, _distribution_route, monkeypatch)
    assert torch.equal(loss, other) and all(torch.equal(a, b) for a, b in zip(grads, other_grads))
