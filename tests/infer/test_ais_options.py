"""AIS's options assigned after construction: the schedule rebuilt, values checked as the constructor does.

``ais.num_steps = 2000`` used to create an unused attribute (the schedule lives in ``betas``): the estimate stayed
the 10-step one; ``ais.num_chains = 1`` ran although the constructor needs at least two chains."""

import base64
import copy
import pickle

import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.errors import ConfigError
from hybridpgm.infer import AIS
from hybridpgm.infer.ais import annealing_schedule
from tests.option_contract import assert_refused_as_by_the_constructor

#: ``pickle.dumps(AIS(20, 10, "linear"), protocol=4)`` and ``pickle.dumps(AIS(20, betas=[0, .3, 1]), protocol=4)``
#: made by the release before the options were checked attributes (HEAD 82e8bc4)
OLD_NAMED = ("gASVpQAAAAAAAACME2h5YnJpZHBnbS5pbmZlci5haXOUjANBSVOUk5QpgZR9lCiMCm51bV9jaGFpbnOUSxSMBWJldGFzlF2U"
             "KEcAAAAAAAAAAEc/uZmZmZmZmkc/yZmZmZmZmkc/0zMzMzMzNEc/2ZmZmZmZmkc/4AAAAAAAAEc/4zMzMzMzM0c/5mZmZmZm"
             "Zkc/6ZmZmZmZmkc/7MzMzMzMzUc/8AAAAAAAAGV1Yi4=")
OLD_GIVEN = ("gASVXQAAAAAAAACME2h5YnJpZHBnbS5pbmZlci5haXOUjANBSVOUk5QpgZR9lCiMCm51bV9jaGFpbnOUSxSMBWJldGFzlF2U"
             "KEcAAAAAAAAAAEc/0zMzMzMzM0c/8AAAAAAAAGV1Yi4=")


def _rbm():
    torch.manual_seed(0)
    return RBM(6, 4, init_scale=0.5)


def test_num_steps_assigned_later_rebuilds_the_schedule_and_the_estimate_follows():
    ais = AIS(num_chains=20, num_steps=10)
    ais.num_steps = 200
    fresh = AIS(num_chains=20, num_steps=200)
    assert ais.num_steps == 200 and ais.betas == fresh.betas == annealing_schedule(200).tolist()
    rbm = _rbm()
    got = ais(rbm, generator=torch.Generator().manual_seed(0))
    want = fresh(rbm, generator=torch.Generator().manual_seed(0))
    assert got.num_steps == 200 and torch.equal(got.log_z, want.log_z)


def test_schedule_assigned_later_rebuilds_the_schedule():
    ais = AIS(num_chains=20, num_steps=30)
    assert ais.schedule == "salakhutdinov"
    ais.schedule = "sigmoid"
    assert ais.schedule == "sigmoid" and ais.betas == AIS(20, 30, "sigmoid").betas


@pytest.mark.parametrize("option, value", [("num_chains", 1), ("num_chains", 2.0), ("num_steps", 0),
                                           ("num_steps", True), ("schedule", "cosine"), ("schedule", None)])
def test_an_assigned_option_is_refused_as_by_the_constructor(option, value):
    ais = AIS(num_chains=5, num_steps=10)
    betas = list(ais.betas)
    assert_refused_as_by_the_constructor(lambda: AIS(**{option: value}), ais, option, value)
    assert (ais.num_chains, ais.betas, ais.schedule) == (5, betas, "salakhutdinov")


def test_given_betas_are_the_schedule_num_steps_and_schedule_cannot_be_set():
    ais = AIS(num_chains=5, num_steps=10, betas=[0.0, 0.3, 1.0])
    assert ais.schedule is None and ais.num_steps == 2
    for option, value in (("num_steps", 100), ("schedule", "linear")):
        with pytest.raises(ConfigError, match=f"AIS {option} cannot be set: the schedule was given as betas "
                                              r"\(2 steps\); set AIS.betas instead"):
            setattr(ais, option, value)
    assert ais.betas == [0.0, 0.3, 1.0]


def test_betas_assigned_later_are_checked_and_become_the_schedule():
    ais = AIS(num_chains=5, num_steps=10)
    with pytest.raises(ConfigError) as by_constructor:
        AIS(betas=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ConfigError) as by_assignment:
        ais.betas = [0.0, 0.7, 0.5, 1.0]
    assert str(by_assignment.value) == str(by_constructor.value)
    ais.betas = torch.tensor([0.0, 0.25, 1.0])
    assert ais.betas == [0.0, 0.25, 1.0] and ais.num_steps == 2 and ais.schedule is None
    with pytest.raises(ConfigError, match="cannot be set"):
        ais.num_steps = 10


def test_pickle_and_copy_keep_the_schedule():
    for ais in (AIS(7, 12, "linear"), AIS(7, betas=[0.0, 0.5, 1.0])):
        for other in (pickle.loads(pickle.dumps(ais)), copy.copy(ais), copy.deepcopy(ais)):
            assert (other.num_chains, other.betas, other.schedule) == (ais.num_chains, ais.betas, ais.schedule)
    other = copy.deepcopy(AIS(7, 12, "linear"))
    other.num_steps = 4
    assert other.betas == annealing_schedule(4, "linear").tolist()


def test_an_estimator_pickled_by_the_earlier_release_loads_with_its_schedule_named():
    """An earlier pickle holds ``num_chains`` and ``betas`` alone: a named schedule's betas are recognised (its
    ``num_steps`` can then be set), others count as given betas."""
    named = pickle.loads(base64.b64decode(OLD_NAMED))
    assert (named.num_chains, named.num_steps, named.schedule) == (20, 10, "linear")
    named.num_steps = 20
    assert named.betas == annealing_schedule(20, "linear").tolist()
    with pytest.raises(ConfigError, match="AIS num_chains must be an integer >= 2"):
        named.num_chains = 1
    given = pickle.loads(base64.b64decode(OLD_GIVEN))
    assert (given.num_chains, given.betas, given.schedule) == (20, [0.0, 0.3, 1.0], None)
    with pytest.raises(ConfigError, match="given as betas"):
        given.num_steps = 5
    assert given(_rbm(), generator=torch.Generator().manual_seed(0)).num_steps == 2
