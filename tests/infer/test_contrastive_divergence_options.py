"""CD/PCD options assigned after construction: ``k`` and ``check_data`` checked as the constructor checks them,
PCD's ``num_chains`` fixed.

``cd.k = 0`` used to be accepted and training then silently did nothing (zero sweeps: the surrogate's gradient is
zero); ``pcd.num_chains = 10`` changed what ``settings()`` reports (compared on resume, written to checkpoints)
while the 100 chains stayed."""

import copy
import pickle

import pytest
import torch

from hybridpgm.energy import RBM
from hybridpgm.errors import ConfigError
from hybridpgm.infer import ContrastiveDivergence, PersistentCD
from hybridpgm.train import fit
from tests.option_contract import assert_refused_as_by_the_constructor


@pytest.mark.parametrize("cls", [ContrastiveDivergence, PersistentCD])
@pytest.mark.parametrize("option, value", [("k", 0), ("k", -2), ("k", 1.5), ("k", True), ("check_data", "no"),
                                           ("check_data", 1)])
def test_an_assigned_option_is_refused_as_by_the_constructor(cls, option, value):
    rbm = RBM(4, 3)
    assert_refused_as_by_the_constructor(lambda: cls(rbm, **{option: value}), cls(rbm), option, value)


def test_k_zero_assigned_later_no_longer_trains_silently_nothing():
    torch.manual_seed(0)
    rbm = RBM(4, 3)
    cd = ContrastiveDivergence(rbm)
    with pytest.raises(ConfigError, match="ContrastiveDivergence k must be a positive integer, got 0"):
        cd.k = 0
    before = rbm.weight.detach().clone()
    fit(cd, torch.bernoulli(torch.full((8, 4), 0.5)), epochs=3, batch_size=8, progress=False)
    assert not torch.equal(rbm.weight, before)


def test_a_valid_k_takes_effect():
    """Guard (passes before the fix too): ``k`` set later is the number of sweeps the next loss runs."""
    rbm = RBM(4, 3)
    x = torch.bernoulli(torch.full((5, 4), 0.5))
    cd = ContrastiveDivergence(rbm)
    cd.k = 3
    torch.manual_seed(1)
    got = cd.loss("model", x)
    torch.manual_seed(1)
    want = ContrastiveDivergence(rbm, k=3).loss("model", x)
    assert cd.settings() == {"k": 3} and torch.equal(got, want)


def test_pcd_num_chains_is_fixed_at_construction():
    pcd = PersistentCD(RBM(6, 4), num_chains=100)
    with pytest.raises(ConfigError, match=r"PersistentCD num_chains is fixed at construction: its 100 persistent "
                                          r"chains are the buffers"):
        pcd.num_chains = 10
    assert pcd.settings() == {"k": 1, "num_chains": 100}
    assert all(chain.shape[0] == 100 for chain in pcd.chains)
    pcd.k = 2  # the other options stay settable
    assert pcd.settings() == {"k": 2, "num_chains": 100}


def test_pickle_and_copy_keep_the_options_and_the_checks():
    pcd = PersistentCD(RBM(3, 2), k=2, num_chains=5, check_data=False)
    for other in (pickle.loads(pickle.dumps(pcd)), copy.deepcopy(pcd)):
        assert other.settings() == {"k": 2, "num_chains": 5} and other.check_data is False
        assert other.chains[0].shape == (5, 3)
        with pytest.raises(ConfigError, match="fixed at construction"):
            other.num_chains = 6
        with pytest.raises(ConfigError, match="PersistentCD k"):
            other.k = 0


def test_an_objective_with_plain_option_attributes_loads():
    """Guard (passes before the fix too): an earlier release pickled ``k``, ``check_data`` and ``num_chains``
    as plain ``__dict__`` entries, the place where the options keep them now: such a state (an nn.Module is
    pickled through its ``__dict__``) loads."""
    pcd = PersistentCD(RBM(3, 2), k=2, num_chains=5)
    state = pcd.__getstate__() if hasattr(pcd, "__getstate__") else dict(vars(pcd))
    assert {"k", "check_data", "num_chains"} <= set(state)
    loaded = PersistentCD.__new__(PersistentCD)
    loaded.__setstate__(dict(state))
    assert loaded.settings() == {"k": 2, "num_chains": 5}
