"""fit's one-row-last-batch watch (hybridpgm/train/one_row_batches.py) on copies of the module and on ranks.

Review A, session 41: the watch was a local function left on a batch norm for the whole run where the layer's
input never had the first micro-batch's rows (a sequence flattened to ``[B * T, C]``), so a callback that pickled
the module failed ("Can't pickle local object"), and a deep copy made during fit kept the watch after fit and raised
its ConfigError at a later call on that many rows.  And a ``SyncBatchNorm`` over several ranks, which torch
normalises over the ranks' rows together (one row per rank is accepted), was refused like a rank's own batch norm."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import ConfigError, TrainingWarning
from hybridpgm.train.batches import BatchStream, TensorData
from hybridpgm.train.one_row_batches import refusing_one_row_last_batch
from tests.train.helpers import LinearRegression, regression_data


class SequenceBatchNorm(LinearRegression):
    """A batch norm over two rows per example (``[2 B, 4]``): the one-row last batch gives it two rows."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.ModuleDict({"a": torch.nn.Linear(5, 8), "bn": torch.nn.BatchNorm1d(4),
                                           "b": torch.nn.Linear(8, 1)})

    def loss(self, player, batch):
        x, y = batch
        m = self.module
        return ((m["b"](m["bn"](m["a"](x).reshape(-1, 4)).reshape(-1, 8)) - y) ** 2).mean()


class Snapshots:
    def __init__(self):
        self.pickles, self.copies = [], []

    def on_step_end(self, info):
        self.pickles.append(pickle.dumps(info.objective.module))
        self.copies.append(copy.deepcopy(info.objective.module))


def test_the_module_pickles_during_fit_and_its_copies_carry_no_watch_after_it():
    """Failed before this fix: each pickle raised AttributeError, and the deep copy raised fit's ConfigError."""
    objective, snapshots = SequenceBatchNorm(), Snapshots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        result = fit(objective, regression_data(n=65), batch_size=32, epochs=2, progress=False, seed=0,
                     callbacks=[snapshots])
    assert result.steps == 6 and len(snapshots.pickles) == 6
    assert not objective.module["bn"]._forward_pre_hooks
    for module in (pickle.loads(snapshots.pickles[0]), snapshots.copies[0]):
        module["bn"].train()(torch.randn(32, 4))
        assert not module["bn"]._forward_pre_hooks  # the inert copy of the watch removed itself


def _watching(layer, world_size):
    """65 examples per rank in batches of 32: a last batch of one row on each rank."""
    stream = BatchStream(TensorData(*regression_data(n=65 * world_size)), 32, seed=0, world_size=world_size)
    return refusing_one_row_last_batch(layer, stream, num_examples=65 * world_size, accumulate=1, drop_last=False,
                                       start=0, stop=10)


def test_a_sync_batch_norm_over_ranks_is_not_refused():
    """A last batch of one row per rank, which a SyncBatchNorm normalises over both ranks' rows (torch refuses
    one value per channel only where ``world_size < 2``).  Failed before this fix (ConfigError)."""
    layer = torch.nn.SyncBatchNorm(4)
    with _watching(layer, world_size=2):
        layer(torch.randn(32, 4))  # out of a process group torch falls back to batch_norm


@pytest.mark.parametrize("layer, world_size", [(torch.nn.BatchNorm1d(4), 2), (torch.nn.SyncBatchNorm(4), 1)])
def test_a_batch_norm_of_one_rank_is_still_refused(layer, world_size):
    """Guard: a rank's own batch norm, and a SyncBatchNorm with nothing to synchronise with, refuse one row."""
    with pytest.raises(ConfigError, match=r"a batch of 1 row, but batch norm layer 'the module itself'"):
        with _watching(layer, world_size):
            layer(torch.randn(32, 4))
