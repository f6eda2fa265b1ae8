"""A conjugate model with local latents: z_n ~ N(0, 1), x_n ~ N(z_n, s^2).

The exact posterior is N(x_n / (1 + s^2), s^2 / (1 + s^2)) and
log p(x_n) = log N(x_n; 0, 1 + s^2)."""

import math

import pyro
import pyro.distributions as dist
import torch

NOISE = 0.5


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, NOISE), obs=x)


def guide_with_width(factor):
    """The exact posterior's mean with ``factor`` times its standard deviation."""
    def guide(x):
        var = NOISE**2 / (1 + NOISE**2)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / (1 + NOISE**2), factor * math.sqrt(var)))
    return guide


def exact_log_likelihood(x):
    return dist.Normal(0.0, math.sqrt(1 + NOISE**2)).log_prob(x)
