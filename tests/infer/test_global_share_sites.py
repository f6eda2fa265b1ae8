"""Which sites SVIObjective(per_example=True) scales by fit's micro-batch share (hybridpgm/infer/global_share.py):
the batch's likelihood written without a data plate (``.to_event`` over the rows, ``pyro.factor`` of their sum) and a
latent of the rows outside the plates are the examples' terms, not global ones.
A plate that subsamples the rows it is given (size b, full size B) is the batch's plate too (its latents were taken for
global ones before).

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
from hybridpgm.errors import ConfigError
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


def test_a_global_enumerated_site_is_refused_under_a_share_and_trains_an_unsplit_batch():
    """Pyro's TraceEnum_ELBO sums ``c`` out over the whole batch, log sum_c p(c) prod_b p(x_b | c): no sum over
    micro-batches.  Under accumulate=2 it is refused, naming ``c`` (before 848527f: Pyro's raw ValueError "Expected
    all enumerated sample sites to share a common poutine.scale"; from 848527f to 2fee98a it was left unscaled and
    counted once per micro-batch: another model, silently); accumulate=1 trains."""
    def run(accumulate):
        m = GlobalChoice()
        x = torch.randn(16, generator=torch.Generator().manual_seed(0))
        fit(SVIObjective(m.model, m.guide, TraceEnum_ELBO(max_plate_nesting=1)), x, epochs=1, batch_size=8,
            accumulate=accumulate, optim=functools.partial(torch.optim.SGD, lr=0.01), progress=False, seed=0)
        return m

    m = run(1)
    assert torch.isfinite(m.shift).all() and not torch.equal(m.shift.detach(), torch.tensor([0.0, 1.0]))
    with pytest.raises(ConfigError, match=r"the enumerated site 'c' lies outside the batch's plate.*share of the "
                                          r"update: 0\.5.*accumulate=1"):
        run(2)


def test_a_plate_that_subsamples_the_rows_it_is_given_is_the_batch_plate():
    """``pyro.plate("data", len(x), subsample_size=2)`` on a batch of 5 rows (size 2, full size 5): its latent ``z``
    is the rows', not global.  Before, only the plate's subsample size was compared with the batch's, ``z`` was taken
    for a global site and scaled by the share under accumulate (its KL term halved against its likelihood's)."""
    def model(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], subsample_size=2) as rows:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w + z, 1.0), obs=x[rows])

    def guide(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], subsample_size=2):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    x = torch.zeros(5)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert sites_outside_batch_plates((guide_trace, model_trace), 5) == {"w"}
