"""``fit`` on a :class:`~hybridpgm.VAE` equal bit for bit to the distribution objects' likelihood (VAEFAST, session 41).

The VAE's direct ELBO (:meth:`~hybridpgm.generative.vae_direct.VAEDirectELBO.direct_elbo_loss`) computes its
Bernoulli likelihood without the distribution objects, for speed, with the promise that no result moves: the
per-step losses, the parameters after six seeded Adam steps, a further ``direct_elbo_loss(x, num_data)`` (the
plate's scale) and its gradients, and the global RNG state afterwards, hashed together, must equal those of the same
run with the likelihood taken from ``_likelihood(out).log_prob(x)`` (the traced program's, d4d62a7's direct path),
for a Bernoulli and a Gaussian likelihood, float32 and float64, bf16 autocast and accumulation over two
micro-batches.  Both runs are in this process, so the comparison holds on any platform's kernels.
"""

from __future__ import annotations

import functools
import hashlib

import pytest
import torch

import hybridpgm
from hybridpgm.generative.vae_direct import VAEDirectELBO

CASES = [(likelihood, dtype, precision, accumulate) for likelihood in ("bernoulli", "gaussian")
         for dtype, precision in (("float32", None), ("float32", "bf16"), ("float64", None)) for accumulate in (1, 2)]


def _distribution_log_likelihood(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The likelihood as the traced program scores it (and d4d62a7's direct path did)."""
    return self._likelihood(out, validate=False).log_prob(x)


def _digest(likelihood: str, dtype: str, precision: str | None, accumulate: int) -> str:
    dt = getattr(torch, dtype)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((64, 20), 0.3)) if likelihood == "bernoulli" else torch.randn(64, 20)
    x = x.to(dt)
    vae = hybridpgm.VAE(20, 3, [16], likelihood=likelihood).to(dt)
    result = hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), x, batch_size=16, max_steps=6,
                           accumulate=accumulate, precision=precision, device="cpu", seed=1, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=1e-2))
    h = hashlib.sha256()
    h.update(repr([float(v).hex() for v in result.history.loss["elbo"]]).encode())
    loss = vae.direct_elbo_loss(x[:16], 100)  # the plate's scale, and autograd outside fit
    loss.backward()
    h.update(loss.detach().numpy().tobytes())
    for p in vae.parameters():
        h.update(p.detach().numpy().tobytes())
        h.update(p.grad.numpy().tobytes())
    h.update(torch.get_rng_state().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_seeded_fit_of_a_vae_is_bitwise_that_of_the_distribution_likelihood(case, monkeypatch):
    fast = _digest(*case)
    monkeypatch.setattr(VAEDirectELBO, "_log_likelihood", _distribution_log_likelihood)
    assert _digest(*case) == fast


@pytest.mark.parametrize("values", [[0.5], [2.0], [-1.0], [0.0, 0.5], [1.0, 2.0], [float("nan")], [float("inf")],
                                    [1.0, float("-inf")]], ids=repr)
@pytest.mark.parametrize("in_fit", [False, True], ids=["direct", "fit"])
def test_binary_check_refuses_every_non_binary_batch(values, in_fit):
    """The Bernoulli VAE's data check (``x - x^2`` zero everywhere) refuses a batch that is constant and
    non-binary (a check of extremes that are equal but not 0 must not pass it), one with values on one side of [0, 1]
    only (``x - x^2`` of one sign), one mixing 0/1 with a non-binary value, and NaN/inf, in ``fit`` (the deferred
    check) as outside it, and takes 0/1 data with -0.0 in it."""
    vae = hybridpgm.VAE(len(values), 2, [4])
    x = torch.tensor([values, values[::-1]])  # [0.5]: constant, so x - x^2 has equal extremes, not 0
    with pytest.raises(hybridpgm.errors.DataError, match="binary|NaN|inf"):
        if in_fit:
            hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), x, batch_size=2, max_steps=1, seed=0,
                          progress=False, optim=functools.partial(torch.optim.Adam, lr=1e-3))
        else:
            vae.direct_elbo_loss(x)
    ok = torch.tensor([[0.0, 1.0, -0.0], [1.0, 1.0, 0.0]])
    assert torch.isfinite(hybridpgm.VAE(3, 2, [4]).direct_elbo_loss(ok))
