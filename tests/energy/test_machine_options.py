"""The RBM's and DBM's options as attributes (hybridpgm.energy.machine_options): ``probabilities`` and
``mean_field_steps`` set later are checked as the constructors check them and saved with the machine; the sizes
and the RBM's ``visible_type`` are fixed."""

from __future__ import annotations

import pickle

import pytest
import torch

import hybridpgm
from hybridpgm.energy.dbm import DBM
from hybridpgm.energy.rbm import RBM
from hybridpgm.errors import DataError, ModelSpecError

GREY = torch.full((2, 4), 0.5)


def _round_trip(machine, tmp_path):
    return hybridpgm.load(hybridpgm.save(machine, tmp_path / "machine.pt"))


def test_rbm_probabilities_set_later_survives_save_and_load(tmp_path):
    """The audit: ``probabilities = True`` came back ``False``, and the loaded RBM refused grey-level data."""
    rbm = RBM(4, 3)
    rbm.probabilities = True
    loaded = _round_trip(rbm, tmp_path)
    assert loaded.probabilities is True
    torch.testing.assert_close(loaded.free_energy(GREY), rbm.free_energy(GREY), rtol=0.0, atol=0.0)
    with pytest.raises(ModelSpecError, match="RBM probabilities"):
        rbm.probabilities = "yes"
    assert rbm.probabilities is True
    rbm.probabilities = False
    with pytest.raises(DataError):
        rbm.free_energy(GREY)


@pytest.mark.parametrize("name, value", [("visible_type", "gaussian"), ("num_visible", 5), ("num_hidden", 2)])
def test_rbm_structure_is_fixed(name, value):
    """The audit: ``visible_type = 'gaussian'`` was accepted (and reverted by save/load)."""
    rbm = RBM(4, 3)
    with pytest.raises(AttributeError, match=rf"RBM.{name} is fixed when the model is built.*build a new RBM"):
        setattr(rbm, name, value)
    assert (rbm.visible_type, rbm.num_visible, rbm.num_hidden, rbm.gaussian) == ("bernoulli", 4, 3, False)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2", None])
def test_dbm_mean_field_steps_set_later_is_checked_as_in_the_constructor(bad):
    """The audit: ``0`` was accepted (zero sweeps) and ``2.5`` gave a raw TypeError in mean_field."""
    dbm = DBM([4, 3, 2])
    with pytest.raises(ModelSpecError, match="DBM mean_field_steps"):
        dbm.mean_field_steps = bad
    assert dbm.mean_field_steps == 10


def test_dbm_options_set_later_survive_save_and_load(tmp_path):
    """The audit: ``mean_field_steps = 1`` came back 10, and the loaded DBM's mean field differed."""
    torch.manual_seed(0)
    dbm = DBM([4, 3, 2], init_scale=1.0)
    dbm.mean_field_steps, dbm.probabilities = 1, True
    loaded = _round_trip(dbm, tmp_path)
    assert (loaded.mean_field_steps, loaded.probabilities) == (1, True)
    with torch.no_grad():
        for got, want in zip(loaded.mean_field(GREY), dbm.mean_field(GREY)):
            torch.testing.assert_close(got, want, rtol=0.0, atol=0.0)
    with pytest.raises(AttributeError, match="DBM.sizes is fixed"):
        dbm.sizes = [4, 3]
    assert dbm.num_layers == 2


def test_pickled_machines_keep_their_options_in_the_old_layout():
    """Guard (passes on the old code too): the options stay ``__dict__`` entries under their own names, so
    machines pickled by earlier releases unpickle with their values."""
    rbm, dbm = RBM(4, 3, probabilities=True), DBM([4, 3, 2], mean_field_steps=3)
    assert (vars(rbm)["probabilities"], vars(rbm)["visible_type"], vars(dbm)["mean_field_steps"]) == (True,
                                                                                                    "bernoulli", 3)
    rbm, dbm = pickle.loads(pickle.dumps(rbm)), pickle.loads(pickle.dumps(dbm))
    assert (rbm.probabilities, rbm.visible_type, dbm.mean_field_steps, dbm.sizes) == (True, "bernoulli", 3, [4, 3, 2])
