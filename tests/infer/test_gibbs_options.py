"""Gibbs' ``max_plate_nesting`` as an attribute (hybridpgm/infer/gibbs.py): read by every sweep, so an assignment
is checked as the constructor checks the argument."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.infer import Gibbs
from tests.option_contract import assert_refused_as_by_the_constructor

DATA = torch.tensor([0.2, -1.0, 1.5])


def model(data):
    with pyro.plate("data", data.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=data)


def _exact_conditional():
    """p(z_i = 1 | x_i) of :func:`model`, ``[3]``."""
    log_one = torch.tensor(0.3).log() + dist.Normal(2.0, 1.0).log_prob(DATA)
    log_zero = torch.tensor(0.7).log() + dist.Normal(0.0, 1.0).log_prob(DATA)
    return torch.sigmoid(log_one - log_zero)


@pytest.mark.parametrize("value", [-1, 2.5, "1", True])
def test_max_plate_nesting_assigned_later_is_refused_as_by_the_constructor(value):
    """The audit: ``-1``, ``2.5`` and ``"1"`` were accepted, and the next sweep failed with a raw error (or
    enumerated at the wrong dim)."""
    kernel = Gibbs(model, max_plate_nesting=1)
    assert_refused_as_by_the_constructor(lambda: Gibbs(model, max_plate_nesting=value), kernel,
                                         "max_plate_nesting", value)
    assert kernel.max_plate_nesting == 1


def test_a_later_value_is_read_by_the_sweeps():
    """Guard (passes on the old code too): a valid value assigned after setup is what the sweeps use (a deeper
    nesting enumerates further left and gives the same conditional); ``None`` is found again by the next setup."""
    kernel = Gibbs(model)
    kernel.setup(0, DATA)
    assert kernel.max_plate_nesting == 1
    kernel.max_plate_nesting = 3
    logits, _ = kernel.log_conditional(["z"], {"z": torch.zeros(3)})
    torch.testing.assert_close(logits.softmax(-1)[..., 1].reshape(-1), _exact_conditional())
    kernel.max_plate_nesting = None
    kernel.setup(0, DATA)
    assert kernel.max_plate_nesting == 1
