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


def test_a_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Before, evaluation.json and the bayes-net samples were written in place: a stopped write left half a
    report where the last whole one had been."""
    import os

    from hybridpgm.recipes.common import write_text_atomically

    path = tmp_path / "evaluation.json"
    write_text_atomically(path, '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n' and os.listdir(tmp_path) == ["evaluation.json"]

    def stopped(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, '{"a": 2}\n')
    assert path.read_text() == '{"a": 1}\n' and os.listdir(tmp_path) == ["evaluation.json"]
