"""SVIObjective refuses Pyro's TraceTailAdaptive_ELBO, whose loss is inf by design (hybridpgm/infer/unfit_elbos.py).

Before, it was accepted and fit stopped at step 0 with TrainingDivergedError ("loss of player 'elbo' is inf"); plain
pyro.infer.SVI trains it (reporting inf), checked here so that the refusal stays a refusal of fit only.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceTailAdaptive_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method
from pyro.optim import Adam

from hybridpgm import SVIObjective
from hybridpgm.errors import ConfigError


class Mean(PyroModule):
    """``mu ~ N(0, 10)``, ``y ~ N(mu, 1)`` in the plate; the guide ``N(loc, 0.1)``."""

    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.zeros(()))

    @pyro_method
    def model(self, y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    @pyro_method
    def guide(self, y):
        pyro.sample("mu", dist.Normal(self.loc, 0.1))


def test_svi_objective_refuses_trace_tail_adaptive_elbo():
    m = Mean()
    with pytest.raises(ConfigError, match=r"SVIObjective: TraceTailAdaptive_ELBO computes only the gradient.*"
                                          r"pyro\.infer\.SVI.*RenyiELBO"):
        SVIObjective(m.model, m.guide, TraceTailAdaptive_ELBO(num_particles=4, vectorize_particles=True))


def test_its_loss_is_inf_by_design_and_plain_svi_trains_it():
    """(In a param-store scope of its own: a PyroModule's ``loc`` would meet another test's in Pyro's global store.)"""
    y = 3.0 + torch.randn(32, generator=torch.Generator().manual_seed(0))
    with pyro.get_param_store().scope():
        m = Mean()
        elbo = TraceTailAdaptive_ELBO(num_particles=4, vectorize_particles=True)
        assert torch.isinf(elbo.differentiable_loss(m.model, m.guide, y))
        svi = SVI(m.model, m.guide, Adam({"lr": 0.05}), elbo)
        for _ in range(200):
            svi.step(y)
        assert abs(m.loc.item() - y.mean().item()) < 0.1
