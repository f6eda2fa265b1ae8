"""``from_pyro_svi(..., generator=g)``: the package's ``generator=`` contract (found by an audit of the samplers:
the guide's draws and the replicates came from torch's global stream only, so the ArviZ data could not be
reproduced from a generator and every call moved the caller's stream)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics import from_pyro_svi
from tests import generator_contract as contract

X = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1])


def _model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


class _Guide(torch.nn.Module):
    """A guide whose network draws in evaluation mode too (MC dropout), besides its sample statement."""

    def forward(self, x):
        loc = torch.nn.functional.dropout(x, 0.5, training=True).mean()
        pyro.sample("mu", dist.Normal(loc, 0.3))


def _groups(parallel, **kw):
    data = from_pyro_svi(_model, _Guide(), X, num_samples=12, parallel=parallel, **kw)
    return [torch.as_tensor(data[group][name].values) for group, name in
            (("posterior", "mu"), ("posterior_predictive", "x"), ("log_likelihood", "x"))]


@pytest.mark.parametrize("parallel", [False, True])
def test_a_generator_makes_the_draws_and_replicates_a_function_of_its_state(parallel):
    contract.assert_generator_contract(lambda **kw: _groups(parallel, **kw), "from_pyro_svi generator")
