"""The ``method`` dispatch of the Boltzmann machines' ``log_partition`` (hybridpgm/energy/enumerate_states.py)."""

from __future__ import annotations

import pytest

from hybridpgm.energy import DBM, RBM
from hybridpgm.errors import ConfigError
from tests.energy.brute_force import random_dbm, random_rbm
from tests.generator_contract import assert_generator_contract


@pytest.mark.parametrize("owner", ["RBM", "DBM"])
def test_log_partition_by_ais_draws_from_the_generator_given(owner):
    """``log_partition("ais", generator=g)`` hands ``g`` to AIS's call: the estimate is a function of ``g``, the
    caller's stream untouched, no generator the old call (tests/energy/generator_contract.py).  Before: an
    unknown AIS option, refused."""
    model = random_rbm(5, 3) if owner == "RBM" else random_dbm([4, 3, 2])
    assert_generator_contract(lambda **kw: model.log_partition("ais", num_chains=4, num_steps=5, **kw),
                              "AIS generator")


@pytest.mark.parametrize("build", [lambda: RBM(4, 3), lambda: DBM([4, 3, 2])], ids=["RBM", "DBM"])
def test_a_chunk_size_given_with_ais_is_refused(build):
    """Found by a docs review: with ``method="ais"`` a ``chunk_size`` (even ``-3``) was ignored without a word,
    although the docstring listed an invalid one among the errors."""
    with pytest.raises(ConfigError, match=r"log_partition\('ais'\) takes no chunk_size"):
        build().log_partition("ais", chunk_size=-3, num_chains=4, num_steps=3)
