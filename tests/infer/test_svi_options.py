"""SVIObjective's ``per_example`` assigned after construction: checked as the constructor checks it.

``objective.per_example = "no"`` used to be accepted as true (the loss divided by the batch size)."""

import pickle

import pyro
import pytest
import torch

from hybridpgm import SVIObjective, VAE
from tests.option_contract import assert_refused_as_by_the_constructor


@pytest.mark.parametrize("value", ["no", 1, None, 0])
def test_per_example_assigned_later_is_refused_as_by_the_constructor(value):
    vae = VAE(6, 2, (4,))
    objective = SVIObjective(vae.model, vae.guide)
    assert_refused_as_by_the_constructor(lambda: SVIObjective(vae.model, vae.guide, per_example=value), objective,
                                         "per_example", value)
    assert objective.per_example is True


def test_a_valid_per_example_takes_effect():
    """Guard (passes before the fix too): ``per_example = False`` set later leaves the loss undivided."""
    torch.manual_seed(0)
    vae = VAE(6, 2, (4,))
    x = torch.bernoulli(torch.rand(8, 6))
    objective = SVIObjective(vae.model, vae.guide)
    objective.per_example = False
    pyro.set_rng_seed(0)
    got = objective.loss("elbo", x)
    pyro.set_rng_seed(0)
    want = SVIObjective(vae.model, vae.guide, per_example=False).loss("elbo", x)
    torch.testing.assert_close(got, want)
    loaded = pickle.loads(pickle.dumps(objective))
    assert loaded.per_example is False and vars(loaded)["per_example"] is False  # where the attribute always was
