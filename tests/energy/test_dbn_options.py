"""DBN's ``sizes`` as an attribute (hybridpgm/energy/dbn.py): fixed, since it decides the RBMs and their
parameters' shapes."""

from __future__ import annotations

import pickle

import pytest

import hybridpgm
from hybridpgm.energy import DBN
from hybridpgm.errors import ConfigError, FixedOptionError


def test_sizes_are_fixed():
    """The audit: ``dbn.sizes = [5, 7]`` was accepted while the RBMs kept their shapes, ``repr`` showed the new
    sizes, and save/load brought back the old ones."""
    dbn = DBN([4, 3, 2])
    with pytest.raises(FixedOptionError, match=r"DBN.sizes is fixed when the model is built .*it is \[4, 3, 2\], "
                                               r"\[5, 7\] was assigned; build a new DBN"):
        dbn.sizes = [5, 7]
    with pytest.raises(ConfigError):  # a FixedOptionError is a ConfigError and an AttributeError
        dbn.sizes = [4, 3]
    assert dbn.sizes == [4, 3, 2] and "sizes=[4, 3, 2]" in repr(dbn)
    dbn.sizes = (4, 3, 2)  # the sizes it has, in another sequence type: nothing changes
    assert [tuple(rbm.weight.shape) for rbm in dbn.rbms] == [(4, 3), (3, 2)]


def test_sizes_survive_save_load_and_pickle_in_the_old_layout(tmp_path):
    """Guard (passes on the old code too): ``sizes`` stays a ``__dict__`` entry, as in the pickles of earlier
    releases, and save/load rebuilds the same DBN."""
    dbn = DBN([4, 3, 2])
    assert vars(dbn)["sizes"] == [4, 3, 2]
    assert pickle.loads(pickle.dumps(dbn)).sizes == [4, 3, 2]
    assert hybridpgm.load(hybridpgm.save(dbn, tmp_path / "dbn.pt")).sizes == [4, 3, 2]
