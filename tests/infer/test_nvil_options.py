"""NVIL's ``max_plate_nesting`` as an attribute (hybridpgm/infer/nvil.py): checked by the constructor (it was passed
to Pyro unchecked) and on assignment, and given to the ELBO, which reads it at each call (it was copied into the
ELBO at construction, so a later assignment made an attribute nothing read)."""

from __future__ import annotations

import pytest

from hybridpgm.infer import NVIL
from tests.generative.sbn_brute_force import binary, random_sbn
from tests.option_contract import assert_refused_as_by_the_constructor

X = binary(4, 3, 0)


def _nvil(**options):
    sbn = random_sbn([3, 2], 0, scale=1.0)
    return NVIL(sbn.model, sbn.guide, hidden_dim=4, **options)


@pytest.mark.parametrize("value", [-1, 1.5, "1", True])
def test_max_plate_nesting_is_checked_by_the_constructor_and_on_assignment(value):
    """The audit: ``NVIL(max_plate_nesting=-1)`` was accepted and the first loss failed inside Pyro."""
    nvil = _nvil(num_particles=2, max_plate_nesting=1)
    error = assert_refused_as_by_the_constructor(lambda: _nvil(max_plate_nesting=value), nvil, "max_plate_nesting",
                                                 value)
    assert "NVIL max_plate_nesting must be an integer >= 0" in str(error)
    assert nvil.elbo.max_plate_nesting == 2  # the model's plate and the particle plate


@pytest.mark.parametrize("num_particles, plus", [(1, 0), (3, 1)])
def test_an_assignment_is_given_to_the_elbo(num_particles, plus):
    """The audit: ``nvil.max_plate_nesting = 1`` set an attribute of the NVIL that nothing read, the ELBO keeping
    its own value.  Now the ELBO gets it as its constructor would (plus the particle plate of vectorized
    particles), and ``None`` has the next loss guess it again."""
    nvil = _nvil(num_particles=num_particles)
    assert nvil.max_plate_nesting is None and nvil.elbo.max_plate_nesting == float("inf")
    nvil.max_plate_nesting = 1
    assert (nvil.max_plate_nesting, nvil.elbo.max_plate_nesting) == (1, 1 + plus)
    assert nvil.loss("elbo", X).isfinite()
    nvil.max_plate_nesting = None
    assert nvil.elbo.max_plate_nesting == float("inf")
    nvil.loss("elbo", X)
    assert nvil.elbo.max_plate_nesting == (1 + plus if plus else float("inf"))  # guessed only when vectorized
    given = _nvil(num_particles=num_particles, max_plate_nesting=1)
    assert (given.max_plate_nesting, given.elbo.max_plate_nesting) == (1, 1 + plus)


@pytest.mark.parametrize("given, particles", [(None, 1), (1, 1), (1, 3), (0, 3)])
def test_an_nvil_pickled_before_the_option_existed_reads_its_elbos_nesting(given, particles):
    """Found by a review: an NVIL pickled by the previous release has no ``max_plate_nesting`` in its ``__dict__``
    and reading it raised ``AttributeError``; it reads the ELBO's value, less the particle plate."""
    import pickle

    nvil = _nvil(max_plate_nesting=given, num_particles=particles)
    state = pickle.loads(pickle.dumps(nvil))
    del state.__dict__["max_plate_nesting"]  # as the previous release pickled it
    assert state.max_plate_nesting == given
    state.max_plate_nesting = 2  # and an assignment works as on a new one
    assert state.max_plate_nesting == 2 and state.elbo.max_plate_nesting == 2 + (particles > 1)
