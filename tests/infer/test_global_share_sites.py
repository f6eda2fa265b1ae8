"""Which sites SVIObjective(per_example=True) scales by fit's micro-batch share (hybridpgm/infer/global_share.py):
the batch's likelihood written without a data plate (``.to_event`` over the rows, ``pyro.factor`` of their sum) and a
latent of the rows outside the plates are the examples' terms, not global ones.

Taken for global (848527f), they were scaled by the share on top of fit's weights m_i / B: ``accumulate=2`` halved the
likelihood and trained weights 0.39 away from ``accumulate=1`` (before 848527f: 0.041, the prior's double count).
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule, PyroParam, pyro_method

from hybridpgm import SVIObjective, fit
from hybridpgm.infer.global_share import sites_outside_batch_plates
from tests.infer.global_share_cases import regression


class PlatelessRegression(PyroModule):
    """``w ~ N(0, 1)^3``; the rows' likelihood as one event of ``B`` values, or as a ``pyro.factor`` of its sum."""

    def __init__(self, likelihood):
        super().__init__()
        self.likelihood = likelihood
        self.loc = PyroParam(torch.zeros(3))

    @pyro_method
    def model(self, x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        if self.likelihood == "event":
            pyro.sample("y", dist.Normal(x @ w, 0.5).to_event(1), obs=y)
        else:
            pyro.factor("y", dist.Normal(x @ w, 0.5).log_prob(y).sum())

    @pyro_method
    def guide(self, x, y):
        pyro.sample("w", dist.Delta(self.loc).to_event(1))


def _fit(likelihood, accumulate):
    m = PlatelessRegression(likelihood)
    fit(SVIObjective(m.model, m.guide), regression(32), epochs=3, batch_size=8, accumulate=accumulate,
        optim=functools.partial(torch.optim.SGD, lr=0.05), progress=False, seed=0)
    return m.loc.detach().clone()


@pytest.mark.parametrize("likelihood", ["event", "factor"])
def test_a_likelihood_without_a_data_plate_is_not_scaled_by_the_share(likelihood):
    torch.testing.assert_close(_fit(likelihood, 2), _fit(likelihood, 1), rtol=0, atol=1e-6)


def test_a_latent_of_the_rows_outside_the_plates_is_not_global():
    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z.sum(-1), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(2))

    x = torch.zeros(5)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert sites_outside_batch_plates((guide_trace, model_trace), 5) == frozenset()


class GlobalChoice(PyroModule):
    """A global enumerated choice ``c`` outside the plate beside a local enumerated ``z`` inside it."""

    def __init__(self):
        super().__init__()
        self.shift = PyroParam(torch.tensor([0.0, 1.0]))

    @pyro_method
    def model(self, x):
        c = pyro.sample("c", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.shift[c] + torch.tensor([-1.0, 1.0])[z], 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        pass


def test_a_global_enumerated_site_is_left_alone():
    """Given the share 1/2 under accumulate=2, ``c`` made Pyro's TraceEnum_ELBO raise its raw ValueError "Expected
    all enumerated sample sites to share a common poutine.scale" (accumulate=1 trained)."""
    m = GlobalChoice()
    x = torch.randn(16, generator=torch.Generator().manual_seed(0))
    fit(SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=1)), x, epochs=1, batch_size=8,
        accumulate=2, optim=functools.partial(torch.optim.SGD, lr=0.01), progress=False, seed=0)
    assert torch.isfinite(m.shift).all() and not torch.equal(m.shift.detach(), torch.tensor([0.0, 1.0]))
