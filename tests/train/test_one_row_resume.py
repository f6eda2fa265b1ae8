"""The one-row watch of fit (hybridpgm/train/one_row_batches.py) on a resumed run.

Carried from session 41 (CARRYA, session 42): a run stopped by its checkpoint just before an epoch's one-row last
batch resumed straight into torch's bare ``ValueError`` "Expected more than 1 value per channel when training"
(the step-0 watch looked only at runs whose first step takes a full batch).  A batch norm fed a tensor of a fixed
size that happens to equal the first micro-batch's rows (a learned constant ``[32, C]``) is still refused, as the
module's docstring says: telling it apart needs the objective run on another batch size before step 0 (a probe
tried in session 42 and taken out: it ran the user's loss once more in every such run)."""

from __future__ import annotations

import warnings

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import ConfigError, TrainingWarning
from tests.train.helpers import LinearRegression, regression_data
from tests.train.test_one_row_batches import BatchNormRegression, _state


class ConstantBatchNorm(LinearRegression):
    """A batch norm over a learned constant of 32 rows (the batch size), whose mean feeds every row: the last
    batch's one row never reaches the layer, which always normalises 32 rows."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.ModuleDict({"lin": torch.nn.Linear(5, 1), "bn": torch.nn.BatchNorm1d(3)})
        self.module.register_parameter("const", torch.nn.Parameter(torch.randn(32, 3)))

    def loss(self, player, batch):
        x, y = batch
        shift = self.module["bn"](self.module.const).sum(-1).mean()
        return ((self.module["lin"](x) + shift - y) ** 2).mean()


class NoiseBatchNorm(ConstantBatchNorm):
    """A batch norm over noise of one row per example (a generator's input): its rows follow the batch's though
    the data never reach it."""

    def loss(self, player, batch):
        x, y = batch
        shift = self.module["bn"](torch.randn(len(x), 3) + self.module.const[0]).sum(-1, keepdim=True)
        return ((self.module["lin"](x) + shift - y) ** 2).mean()


def _quiet_fit(objective, data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)
        return fit(objective, data, progress=False, seed=0, **options)


@pytest.mark.parametrize("n, accumulate, rows", [(65, 1, "1 row"), (67, 2, "3 rows")])
def test_a_run_resumed_at_the_one_row_last_batch_is_refused_before_any_update(tmp_path, n, accumulate, rows):
    """Failed on 169fb6c: the resumed run's first step raised torch's bare ValueError (accumulate=1), or ran the
    2-row micro-batch's forward before micro-batch 2's refusal at step 2 (accumulate=2)."""
    path = tmp_path / "run.pt"
    data = regression_data(n=n)
    objective = BatchNormRegression()
    assert _quiet_fit(objective, data, batch_size=32, max_steps=2, accumulate=accumulate,
                      checkpoint=path).steps == 2
    before = _state(objective)
    with pytest.raises(ConfigError) as caught:
        _quiet_fit(objective, data, batch_size=32, epochs=2, accumulate=accumulate, checkpoint=path)
    message = str(caught.value)
    assert message.startswith(f"fit: the data's {n} examples in batches of batch_size=32 end each epoch with a "
                              f"batch of {rows}"), message
    assert "batch norm layer '1' (BatchNorm1d, training mode)" in message and "pass drop_last=True" in message
    assert "this run resumes at that batch" in message
    after = _state(objective)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))


def test_a_run_resumed_after_the_one_row_batch_trains_on(tmp_path):
    """Guard: a run resumed at the next epoch's first batch with ``max_steps`` stopping before the one-row batch
    is not refused (the watch looks only at runs that reach it)."""
    path = tmp_path / "run.pt"
    data = regression_data(n=65)
    _quiet_fit(BatchNormRegression(), data, batch_size=32, max_steps=1, checkpoint=path)
    assert _quiet_fit(BatchNormRegression(), data, batch_size=32, max_steps=2, checkpoint=path).steps == 2


def test_a_batch_norm_of_a_fixed_number_of_rows_equal_to_the_batch_size_is_refused_as_documented():
    """The known limit of the shape rule: ``[32, 3]`` on a first micro-batch of 32 rows is taken to follow the rows,
    and the remedy the message names trains it."""
    with pytest.raises(ConfigError, match=r"its input has shape \(32, 3\) on a first micro-batch of 32 rows"):
        _quiet_fit(ConstantBatchNorm(), regression_data(n=65), batch_size=32, epochs=2)
    assert _quiet_fit(ConstantBatchNorm(), regression_data(n=65), batch_size=32, epochs=2, drop_last=True).steps == 4


def test_a_batch_norm_over_rows_the_data_never_reach_is_still_refused():
    """Guard: noise of one row per example follows the batch's rows, so the last batch gives it one row."""
    objective = NoiseBatchNorm()
    before = _state(objective)
    with pytest.raises(ConfigError, match=r"batch norm layer 'bn' \(BatchNorm1d, training mode\) normalises over "
                                          r"the rows \(its input has shape \(32, 3\)"):
        _quiet_fit(objective, regression_data(n=65), batch_size=32, epochs=2)
    after = _state(objective)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))
