"""ChromaticGibbs's options assigned after construction: checked as the constructor checks them, jointly.

``burn_in = num_sweeps`` used to be accepted and a traced run then failed in ``torch.stack`` (a raw RuntimeError);
``thin = 0`` failed with a ZeroDivisionError."""

import base64
import pickle

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.graphs.grids import ising_grid
from hybridpgm.infer import ChromaticGibbs
from tests.option_contract import assert_refused_as_by_the_constructor

#: ``pickle.dumps(ChromaticGibbs(10, 2, 2), protocol=4)`` made by the release before the options were checked
#: attributes (HEAD 82e8bc4)
OLD_PICKLE = ("gASVXAAAAAAAAACMGWh5YnJpZHBnbS5pbmZlci5tcmZfZ2liYnOUjA5DaHJvbWF0aWNHaWJic5STlCmBlH2UKIwKbnVtX3N3"
              "ZWVwc5RLCowHYnVybl9pbpRLAowEdGhpbpRLAnViLg==")

BAD = [("burn_in", 10), ("burn_in", 20), ("burn_in", -1), ("burn_in", 1.0), ("thin", 0), ("thin", True),
       ("num_sweeps", 0), ("num_sweeps", 3), ("num_sweeps", 2.5)]


@pytest.mark.parametrize("option, value", BAD)
def test_an_assigned_count_is_refused_as_by_the_constructor(option, value):
    """Each against the other two as they are (``num_sweeps = 3`` with ``burn_in = 3``; ``burn_in = 10`` with
    ``num_sweeps = 10``): the constructor's message, naming all three."""
    counts = {"num_sweeps": 10, "burn_in": 3, "thin": 1}
    sampler = ChromaticGibbs(**counts)
    error = assert_refused_as_by_the_constructor(lambda: ChromaticGibbs(**{**counts, option: value}), sampler, option,
                                                 value)
    assert "need integers num_sweeps >= 1, 0 <= burn_in < num_sweeps, thin >= 1" in str(error)
    assert (sampler.num_sweeps, sampler.burn_in, sampler.thin) == (10, 3, 1)


def test_burn_in_assigned_to_num_sweeps_is_refused_before_a_raw_stack_error():
    sampler = ChromaticGibbs(num_sweeps=10)
    with pytest.raises(ConfigError, match="got num_sweeps=10, burn_in=10, thin=1"):
        sampler.burn_in = 10
    trace = sampler(ising_grid(2, 2, 0.3).factor_graph(), 3, return_trace=True)
    assert trace.shape == (10, 3, 1, 4)


def test_valid_assignments_take_effect_in_any_order_the_rule_allows():
    """Guard (passes before the fix too): counts set later are the ones the next call uses."""
    fg = ising_grid(2, 3, 0.4).factor_graph()
    sampler = ChromaticGibbs(num_sweeps=4)
    sampler.num_sweeps = 10
    sampler.burn_in, sampler.thin = 3, 2
    got = sampler(fg, 5, return_trace=True, generator=torch.Generator().manual_seed(0))
    want = ChromaticGibbs(10, 3, 2)(fg, 5, return_trace=True, generator=torch.Generator().manual_seed(0))
    assert got.shape == (4, 5, 1, 6) and torch.equal(got, want)


def test_a_sampler_pickled_by_the_earlier_release_loads_and_checks_later_assignments():
    sampler = pickle.loads(base64.b64decode(OLD_PICKLE))
    assert (sampler.num_sweeps, sampler.burn_in, sampler.thin) == (10, 2, 2)
    assert sampler(ising_grid(2, 2, 0.3).factor_graph(), 3, return_trace=True).shape == (4, 3, 1, 4)
    with pytest.raises(ConfigError, match="need integers"):
        sampler.thin = 0
    with pytest.raises(ConfigError, match="need integers"):
        sampler.num_sweeps = 2
