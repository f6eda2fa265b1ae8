"""Pyro models shared by the tests of the converters' replays (``from_pyro_svi``, ``from_mcmc``, with and without
``parallel``): two global latents over a plate, the same model mixing its draws, an enumerated mixture, and a
wrapper that counts a model's runs."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate

#: the data of :func:`enumerated_mixture`: two clusters
MIXTURE_Y = torch.tensor([-2.0, -1.8, 2.1, 1.9, 2.2])


def plate_model(x):
    """Global ``mu`` and ``log_sigma``, one observed site ``"x"`` over a plate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, log_sigma.exp()), obs=x)


def mixing_model(x):
    """:func:`plate_model` summing a latent over all its dims: fine draw by draw, wrong on stacked draws (it mixes
    them)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu.sum(), log_sigma.exp()), obs=x)


@config_enumerate
def enumerated_mixture(y):
    """Two Gaussian clusters with an enumerated assignment ``c_n`` per point."""
    loc = pyro.sample("loc", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
    with pyro.plate("data", len(y)):
        c = pyro.sample("c", dist.Categorical(torch.tensor([0.5, 0.5])))
        pyro.sample("y", dist.Normal(loc[c], 1.0), obs=y)


class Counted:
    """A model that counts its runs."""

    def __init__(self, program):
        self.program, self.runs = program, 0

    def __call__(self, *args, **kwargs):
        self.runs += 1
        return self.program(*args, **kwargs)
