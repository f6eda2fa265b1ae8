"""ParticleELBO's ``max_plate_nesting`` and ``plate_name`` as attributes (hybridpgm/infer/particle_elbo.py): read at
each call, so an assignment is checked as the constructor checks the argument (``plate_name`` is now checked by
both: ``None`` or a non-empty string)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer.particle_elbo import ParticleELBO
from hybridpgm.infer.rws import ReweightedWakeSleepELBO
from tests.option_contract import assert_refused_as_by_the_constructor

X = torch.tensor([0.5, -1.0, 2.0])


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(0.1, 1.0))


@pytest.mark.parametrize("value", [-1, 1.5, "1", True])
def test_max_plate_nesting_assigned_later_is_refused_as_by_the_constructor(value):
    """The audit: ``-1`` and ``1.5`` were accepted (the particle plate then went to dim 0, or ``int(1.5)``)."""
    elbo = ParticleELBO(2, max_plate_nesting=1)
    error = assert_refused_as_by_the_constructor(lambda: ParticleELBO(2, max_plate_nesting=value), elbo,
                                                 "max_plate_nesting", value)
    assert "ParticleELBO max_plate_nesting" in str(error)


@pytest.mark.parametrize("value", [3, "", b"data"])
def test_plate_name_is_checked_by_the_constructor_and_on_assignment(value):
    """The audit: any value was accepted, by the constructor too, and the call then named it as a plate no site
    lies in.  The message names the objective's class."""
    elbo = ReweightedWakeSleepELBO(2, plate_name="data")
    error = assert_refused_as_by_the_constructor(lambda: ReweightedWakeSleepELBO(2, plate_name=value), elbo,
                                                 "plate_name", value)
    assert str(error).startswith("ReweightedWakeSleepELBO plate_name must be None or the data plate's name")


def test_none_assigned_later_has_the_next_call_guess_the_nesting():
    """The audit: ``max_plate_nesting = None`` (the constructor's "guess it") was held as ``None`` and the next call
    failed with a raw TypeError (``int(None)``)."""
    elbo = ParticleELBO(4, max_plate_nesting=2, plate_name="data")
    elbo.max_plate_nesting = None
    assert elbo.max_plate_nesting == float("inf")
    weights = elbo.log_weights(model, guide, X)
    assert elbo.max_plate_nesting == 1 and weights.log_p.shape == (4, 3)
    with pytest.raises(ConfigError, match="ParticleELBO plate_name"):
        elbo.plate_name = 7
    elbo.plate_name = None  # the outermost plate of every site: "data"
    assert elbo.log_weights(model, guide, X).log_q.shape == (4, 3)
