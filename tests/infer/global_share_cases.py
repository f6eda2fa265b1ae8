"""A Bayesian regression whose weights are a global latent (outside the data plate), MAP-fitted with a delta guide
(a deterministic loss), shared by tests/infer/test_global_share.py and the 2-rank run of tests/train/ddp_worker.py
(the DDP audit's repro_1)."""

import functools

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit


class BayesRegression(PyroModule):
    """``w ~ N(0, 1)^3`` outside the plate ``data``, ``y ~ N(x w, 0.5)`` inside it; the guide a delta at ``loc``."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(3))

    @pyro_method
    def model(self, x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    @pyro_method
    def guide(self, x, y):
        pyro.sample("w", dist.Delta(self.loc).to_event(1))


def regression(n=32):
    """``n`` rows of ``y = x [2, -1, 0.5] + 0.5 noise``, seeded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([2.0, -1.0, 0.5]) + 0.5 * torch.randn(n, generator=g)


def fit_regression(batch, accumulate=1, elbo=None, n=32, epochs=3):
    """The fitted ``loc`` after ``epochs`` of SGD (lr 0.05) on :func:`regression` (``batch`` rows per rank)."""
    m = BayesRegression()
    fit(SVIObjective(m.model, m.guide, elbo), regression(n), epochs=epochs, batch_size=batch, accumulate=accumulate,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return m.loc.detach().clone()
