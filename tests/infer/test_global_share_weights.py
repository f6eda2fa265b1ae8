"""The importance-weighted objectives and a global latent under fit's micro-batches (hybridpgm/infer/global_share.py,
"Which objectives").

Their weights hold the global latent's density inside a log-mean-exp over particles, so the bound of a batch is no
sum over its micro-batches and no share makes ``accumulate`` train the unsplit batch's bound:

* IWAE under SVIObjective takes the whole batch as one weight when a site lies outside the data plate; under a
  share other than 1 it is refused with a ConfigError naming the site (before: the share went into the weights and
  IWAE raised an ObjectiveError about sites "scaled differently", naming neither the global site nor accumulate);
* VIMCO, RWS and wake-sleep take one weight per data point and refuse a site outside the data plate at any
  ``accumulate`` (as before: these tests pin that refusal, they do not fail on 2fee98a).
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.infer import IWAE, RWS, VIMCO, WakeSleep
from tests.infer.global_share_cases import regression


class GlobalAndLocal(PyroModule):
    """``w ~ N(0, 1)^3`` outside the plate ``data``, ``z ~ N(0, 1)`` and ``y ~ N(x w + z + bias, 0.5)`` in it
    (vectorized particles welcome); the guide ``N(loc, 0.1)`` for ``w`` and ``N(enc(x), 0.1)`` for ``z``; with
    ``global_latent=False`` no ``w`` (``x w`` is ``x [1, 1, 1]``) and ``loc`` is left alone."""

    def __init__(self, global_latent=True):
        super().__init__()
        self.global_latent = global_latent
        self.loc = PyroParam(torch.zeros(3))
        self.enc = torch.nn.Linear(3, 1)
        self.bias = torch.nn.Parameter(torch.zeros(()))  # the model's own (wake-sleep's "wake" player)

    @pyro_method
    def model(self, x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1)) if self.global_latent else torch.ones(3)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal((x * w).sum(-1) + z + self.bias, 0.5), obs=y)  # w: [K, 1, 3] under particles

    @pyro_method
    def guide(self, x, y):
        if self.global_latent:
            pyro.sample("w", dist.Normal(self.loc, 0.1).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.enc(x).squeeze(-1), 0.1))

    def model_parameters(self):
        return [self.bias]

    def guide_parameters(self):
        return [self.loc, *self.enc.parameters()]


def _fit(objective, accumulate):
    return fit(objective, regression(32), epochs=1, batch_size=8, accumulate=accumulate,
               optim=functools.partial(torch.optim.SGD, lr=0.01), progress=False, seed=0)


@pytest.mark.parametrize("elbo", [IWAE(1), IWAE(4)], ids=["IWAE-1", "IWAE-4"])
def test_iwae_with_a_global_latent_is_refused_under_a_share_naming_the_site(elbo):
    m = GlobalAndLocal()
    with pytest.raises(ConfigError, match=rf"SVIObjective with {type(elbo).__name__}: the latent site\(s\) \['w'\] "
                                          r"lie outside the batch's plate.*share 0\.5.*accumulate=1"):
        _fit(SVIObjective(m.model, m.guide, elbo), 2)


def test_iwae_with_a_global_latent_trains_an_unsplit_batch_and_iwae_without_one_any():
    """accumulate=1 (one weight for the whole batch) trains as before; a model without global latents is not
    refused under accumulate=2 (its rows' weights split over the micro-batches)."""
    m = GlobalAndLocal()
    _fit(SVIObjective(m.model, m.guide, IWAE(4)), 1)
    assert torch.isfinite(m.loc).all() and not torch.equal(m.loc.detach(), torch.zeros(3))
    local = GlobalAndLocal(global_latent=False)
    before = local.enc.weight.detach().clone()
    _fit(SVIObjective(local.model, local.guide, IWAE(4)), 2)
    assert not torch.equal(local.enc.weight.detach(), before)


@pytest.mark.parametrize("make", [
    lambda m: RWS(m.model, m.guide, 3),
    lambda m: VIMCO(m.model, m.guide, 3),
    lambda m: WakeSleep(m.model, m.guide),
], ids=["RWS", "VIMCO", "WakeSleep"])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_per_datapoint_weights_refuse_a_global_latent_at_any_accumulate(make, accumulate):
    with pytest.raises(ObjectiveError, match=r"\['w'\] lie outside the data plate 'data'.*no global latents"):
        _fit(make(GlobalAndLocal()), accumulate)
