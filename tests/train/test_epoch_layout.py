"""A resume that changes the layout of the epochs (``override_hyperparameters=True`` with another batch size,
data size or ``drop_last``) starts a new layout at the next epoch boundary (hybridpgm/train/resume.py:
epoch_layout; hybridpgm/train/batches.py: BatchStream's ``layout``): the rest of the interrupted epoch is
skipped, no example is seen twice in an epoch, and ``epochs`` counts whole epochs."""

import collections

import torch

from hybridpgm import fit
from hybridpgm.train.batches import BatchStream, TensorData, num_steps
from hybridpgm.train.checkpoint import load_checkpoint
from hybridpgm.train.resume import epoch_layout

N = 40


class _Seen:
    """One player; records the examples (their index, the data are 0..N-1) of each loss call."""

    def __init__(self, seen):
        torch.manual_seed(0)
        self.module, self.seen = torch.nn.Linear(1, 1), seen

    def players(self):
        return {"m": list(self.module.parameters())}

    def loss(self, player, batch):
        self.seen.extend(int(v) for v in batch[:, 0])
        return self.module(batch).pow(2).mean()


class _Epochs:
    def __init__(self):
        self.epochs = []

    def on_step_end(self, info):
        self.epochs.append(info.epoch)


def _fit(path, batch_size, epochs, **kwargs):
    seen, epoch_log = [], _Epochs()
    result = fit(_Seen(seen), torch.arange(float(N)).unsqueeze(1), epochs=epochs, batch_size=batch_size, seed=0,
                 progress=False, checkpoint=path, callbacks=[epoch_log], **kwargs)
    return result, seen, epoch_log.epochs


def test_another_batch_size_mid_epoch_skips_the_rest_of_the_epoch(tmp_path, capsys):
    """Before, the saved step was mapped through the new batch size: 2 steps of 12 became 2 steps of 4 into
    epoch 0, whose examples were partly seen twice, and "2 epochs" ran 20 steps of 4 after 24 examples."""
    ckpt = tmp_path / "c.pt"
    _, first, epochs = _fit(ckpt, 12, 2, max_steps=2)
    assert len(first) == 24 and epochs == [0, 0]
    result, seen, epochs = _fit(ckpt, 4, 2, override_hyperparameters=True)
    assert "the last 2 of the 4 steps of epoch 0 are skipped, and epoch 1 starts at step 2" in capsys.readouterr().err
    assert result.steps == 2 + 10 and epochs == [1] * 10
    assert sorted(seen) == list(range(N))  # epoch 1, whole, each example once
    assert load_checkpoint(ckpt)["epoch_layout"] == [2, 1]
    result, seen, epochs = _fit(ckpt, 4, 3)  # the same layout: resumed as it is, one more epoch
    assert "laid out anew" not in capsys.readouterr().err
    assert result.steps == 22 and epochs == [2] * 10 and sorted(seen) == list(range(N))


def test_another_batch_size_at_an_epoch_boundary_skips_nothing(tmp_path, capsys):
    ckpt = tmp_path / "c.pt"
    _fit(ckpt, 12, 1)
    result, seen, epochs = _fit(ckpt, 8, 3, override_hyperparameters=True)
    assert "epoch 1 starts at step 4" in capsys.readouterr().err
    assert result.steps == 4 + 2 * 5 and epochs == [1] * 5 + [2] * 5
    assert collections.Counter(seen) == {i: 2 for i in range(N)}


def test_a_layout_starts_its_epochs_at_its_step():
    data = TensorData(torch.arange(10))
    plain, moved = BatchStream(data, 3, seed=1), BatchStream(data, 3, seed=1, layout=(2, 1))
    assert moved.epoch_and_position(2) == (1, 0) and moved.epoch_of(9) == 2
    assert all(torch.equal(moved.batch(2 + k), plain.batch(4 + k)) for k in range(8))
    assert num_steps(4, 3, None, (2, 1)) == 10 and num_steps(4, 3, 7, (2, 1)) == 7
    assert num_steps(4, 1, None, (2, 1)) == 2  # the epochs before the layout are done


def test_an_unchanged_or_unrecorded_layout_is_kept():
    config = {"global_batch_size": 4, "num_examples": N, "drop_last": False, "steps_per_epoch": 10}
    assert epoch_layout({"config": config, "epoch_layout": [2, 1]}, config, 7) == ((2, 1), None)
    assert epoch_layout({"config": config}, config, 7) == ((0, 0), None)
    older = {k: v for k, v in config.items() if k != "steps_per_epoch"}
    assert epoch_layout({"config": older}, {**config, "global_batch_size": 8}, 7) == ((0, 0), None)
