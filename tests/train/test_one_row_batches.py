"""An epoch's last batch of one row under batch norm, refused at fit's first step (hybridpgm/train/one_row_batches.py).

Carried since session 37 (CARRYFIX, session 41): a model with a ``BatchNorm1d`` in training mode, 65 examples in
batches of 32, trained two steps and stopped at the third (the epoch's last batch, one row) with torch's bare
``ValueError`` "Expected more than 1 value per channel when training" (a ``VAE(batch_norm=True)``: its own
``ConfigError``), after a whole epoch.  Now the first step refuses it before any parameter moves, naming the
layer, the data set's size, the batch size and ``drop_last=True``; a batch norm that takes one row (over images),
a run that stops before that batch, ``drop_last=True`` and layers in eval mode train as before."""

from __future__ import annotations

import warnings

import pytest
import torch

from hybridpgm import VAE, SVIObjective, fit
from hybridpgm.errors import ConfigError, TrainingWarning
from hybridpgm.train.one_row_batches import one_row_last_batch
from tests.train.helpers import LinearRegression, regression_data


class BatchNormRegression(LinearRegression):
    """A regression through torch's ``BatchNorm1d`` (refuses a training batch of one row)."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))


class ImageBatchNorm(LinearRegression):
    """A ``BatchNorm2d`` over 2x2 feature maps: one row holds four values per channel, which torch accepts."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 2, 2)), torch.nn.Conv2d(1, 3, 1),
                                          torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.Linear(12, 1))

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x[:, :4]) - y) ** 2).mean()


def _state(objective):
    return {k: v.clone() for k, v in objective.module.state_dict().items()}


def _quiet_fit(objective, data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        return fit(objective, data, progress=False, seed=0, **options)


def test_a_one_row_last_batch_is_refused_before_the_first_update():
    """Fails before: steps 0 and 1 trained and step 2 raised torch's ValueError, not a ConfigError."""
    objective = BatchNormRegression()
    before = _state(objective)
    with pytest.raises(ConfigError) as caught:
        _quiet_fit(objective, regression_data(n=65), batch_size=32, epochs=3)
    message = str(caught.value)
    assert message.startswith("fit: the data's 65 examples in batches of batch_size=32 end each epoch with a batch "
                              "of 1 row, but batch norm layer '1' (BatchNorm1d, training mode) normalises over the "
                              "rows (its input has shape (32, 4)"), message
    assert "pass drop_last=True" in message
    after = _state(objective)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))


def test_drop_last_trains_the_same_model():
    result = _quiet_fit(BatchNormRegression(), regression_data(n=65), batch_size=32, epochs=3, drop_last=True)
    assert result.steps == 6


def test_a_vae_with_batch_norm_is_refused_at_the_first_step():
    """Fails before: the VAE's own ConfigError at step 2 ("got a training batch of one row ... step 2")."""
    torch.manual_seed(0)
    vae = VAE(8, 2, (4,), batch_norm=True)
    x = torch.bernoulli(torch.full((65, 8), 0.4), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"^fit: the data's 65 examples in batches of batch_size=32 end each epoch "
                                          r"with a batch of 1 row, but batch norm layer '(en|de)coder\.1' "
                                          r"\(BatchNorm1d, training mode\)"):
        _quiet_fit(SVIObjective(vae.model, vae.guide), x, batch_size=32, epochs=2)


def test_a_last_batch_split_into_a_one_row_micro_batch_is_refused_at_step_0():
    """Fails before: 67 rows, batches of 32 and accumulate=2 ran steps 0 and 1, then micro-batch 2 of 2 of the
    3-row last batch raised at step 2."""
    with pytest.raises(ConfigError, match=r"a batch of 3 rows, which accumulate=2 splits into micro-batches of 2, 1 "
                                          r"rows, but batch norm layer '1' .*shape \(16, 4\) on a first micro-batch "
                                          r"of 16 rows.*at least 4 rows"):
        _quiet_fit(BatchNormRegression(), regression_data(n=67), batch_size=32, accumulate=2)


def test_a_batch_norm_that_takes_one_row_trains_on():
    """Guard: a BatchNorm2d over 2x2 maps takes the one-row last batch (torch normalises its four values)."""
    assert _quiet_fit(ImageBatchNorm(), regression_data(n=65), batch_size=32, epochs=2).steps == 6


def test_a_run_that_stops_before_the_last_batch_trains_on():
    """Guard: ``max_steps=2`` never reaches the one-row batch; a batch norm kept in eval mode (its running
    statistics) takes one row."""
    assert _quiet_fit(BatchNormRegression(), regression_data(n=65), batch_size=32, max_steps=2).steps == 2
    objective = BatchNormRegression()
    objective.module[1].eval()  # the layer alone: fit trains a model in eval mode as a whole
    assert _quiet_fit(objective, regression_data(n=65), batch_size=32, epochs=1).steps == 3


@pytest.mark.parametrize("args, rows", [
    ((65, 32, 1, False, 1), 1), ((65, 32, 1, True, 1), None), ((64, 32, 1, False, 1), None),
    ((66, 32, 1, False, 1), None), ((67, 32, 1, False, 2), 3), ((68, 32, 1, False, 2), None),
    ((1, 32, 1, False, 1), None), ((70, 32, 1, False, 4), 6), ((131, 32, 2, False, 1), 1),
    ((65, 3, 1, False, 2), None),
])
def test_which_last_batches_have_a_one_row_micro_batch(args, rows):
    """(N, batch_size, ranks, drop_last, accumulate): one row where 1 <= r < 2 accumulate; a lone batch of one
    row, and full batches that split into one row (batch_size < 2 accumulate), already fail at step 0."""
    assert one_row_last_batch(*args) == rows
