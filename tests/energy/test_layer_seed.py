"""layer_seed: the seed of a pretraining layer's initial weights (moved out of hybridpgm/energy/dbm.py, where it was
``_layer_seed``; the values are pinned so that a seeded ``DBM.pretrain`` gives the DBM it gave before)."""

import numpy as np
import pytest
import torch

from hybridpgm.energy.layer_seed import layer_seed
from hybridpgm.errors import ConfigError


def test_layer_seeds_are_pinned_distinct_and_none_without_a_seed():
    # the values of dbm._layer_seed before the move (git show HEAD:hybridpgm/energy/dbm.py)
    assert [layer_seed(0, layer, "w") for layer in range(3)] == [
        int(np.random.SeedSequence([0, layer]).generate_state(1, np.uint32)[0]) for layer in range(3)]
    seeds = {layer_seed(s, layer, "w") for s in (0, 1, -1, 2**64 - 2) for layer in range(4)}
    assert len(seeds) == 16 and all(0 <= s < 2**32 for s in seeds)
    assert layer_seed(-1, 0, "w") == layer_seed(2**64 - 1 - 0, 0, "w")  # seed % 2**64, as before
    assert layer_seed(np.int64(5), 1, "w") == layer_seed(torch.tensor(5), 1, "w") == layer_seed(5, 1, "w")
    assert layer_seed(None, 0, "w") is None


@pytest.mark.parametrize("bad", [1.5, True, "1"])
def test_a_seed_that_is_not_an_integer_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match=r"^DBM\.pretrain seed must be an integer"):
        layer_seed(bad, 0, "DBM.pretrain seed")
