"""The sigmoid belief net's options as attributes: ``validate_data`` set later is checked and saved with the net;
``layer_sizes`` and ``num_layers`` are fixed (hybridpgm.generative.sbn)."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.sbn import SigmoidBeliefNet

GREY = torch.full((2, 4), 0.5)  # not binary: refused while validate_data is on


def test_validate_data_set_later_survives_save_and_load(tmp_path):
    """The audit: ``validate_data = False`` came back ``True`` from save/load."""
    sbn = SigmoidBeliefNet([4, 2])
    sbn.validate_data = False
    loaded = hybridpgm.load(hybridpgm.save(sbn, tmp_path / "sbn.pt"))
    assert loaded.validate_data is False
    torch.testing.assert_close(loaded.check_data(GREY), GREY)  # not checked, as by the net it was saved from
    loaded.validate_data = True
    with pytest.raises(DataError, match="expects binary data"):
        loaded.check_data(GREY)


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_validate_data_set_later_is_checked_as_in_the_constructor(bad):
    sbn = SigmoidBeliefNet([4, 2])
    with pytest.raises(ModelSpecError, match="SigmoidBeliefNet validate_data"):
        sbn.validate_data = bad
    assert sbn.validate_data is True


@pytest.mark.parametrize("name, value", [("layer_sizes", [4, 3]), ("num_layers", 2)])
def test_sizes_are_fixed(name, value):
    sbn = SigmoidBeliefNet([4, 2])
    with pytest.raises(AttributeError, match=rf"SigmoidBeliefNet.{name} is fixed.*build a new SigmoidBeliefNet"):
        setattr(sbn, name, value)
    assert (sbn.layer_sizes, sbn.num_layers, sbn.latent_sites) == ([4, 2], 1, ["h1"])
