"""The flags and figures every recipe shares (hybridpgm/recipes/common.py)."""

from types import SimpleNamespace

import pytest

import hybridpgm.recipes.common as common


@pytest.mark.parametrize("world", [1, 4])
def test_throughput_counts_the_examples_each_rank_trains_on(world, monkeypatch):
    """Each of ``W`` ranks trains on ``N // W`` examples, an epoch of ``ceil((N // W) / B)`` steps.  Before,
    epochs were laid out over all ``N`` examples and then multiplied by ``W``: 6052 counted instead of 5024 for
    1257 digits, batches of 128, 4 ranks and 4 epochs."""
    n, batch, epochs = 1257, 128, 4
    shard = n // world
    steps_per_epoch = -(-shard // batch)
    monkeypatch.setattr(common, "current", lambda: SimpleNamespace(world_size=world))
    seen = common.throughput(SimpleNamespace(steps=epochs * steps_per_epoch), n, batch, 0, seconds=2.0) * 2.0
    assert seen == pytest.approx(epochs * world * shard)
    # a resumed run counts only its own steps: the last epoch
    resumed = common.throughput(SimpleNamespace(steps=epochs * steps_per_epoch), n, batch,
                                (epochs - 1) * steps_per_epoch, seconds=1.0)
    assert resumed == pytest.approx(world * shard)
