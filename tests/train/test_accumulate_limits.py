"""Where accumulation and data parallelism change the objective: batch norm and non-decomposable losses.

``fit`` warns once when ``accumulate > 1`` (or several ranks) meets a torch batch norm in training mode,
names the micro-batch when accumulation leaves one row under batch norm, and refuses to split the batch
of an objective that says it is not decomposable.
"""

import warnings

import pytest
import torch

from hybridpgm import VAE, SVIObjective, fit
from hybridpgm.errors import ConfigError, TrainingWarning
from hybridpgm.train import distributed
from hybridpgm.train.distributed import DistributedContext
from tests.train.helpers import LinearRegression, regression_data

BATCH_NORM = "the model holds batch normalisation in training mode"


def _binary(n=24, d=8):
    return torch.bernoulli(torch.full((n, d), 0.4), generator=torch.Generator().manual_seed(0))


def _vae_fit(batch_norm, **options):
    torch.manual_seed(0)
    vae = VAE(8, 2, (4,), batch_norm=batch_norm)
    return fit(SVIObjective(vae.model, vae.guide), _binary(), progress=False, seed=0, **options)


class BatchNormRegression(LinearRegression):
    """A regression through torch's own ``BatchNorm1d``, which refuses a training batch of one row."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))


class Coupled(LinearRegression):
    """A loss that is not a mean over examples."""

    decomposable = False


def test_accumulating_over_batch_norm_warns_once_per_fit():
    with pytest.warns(UserWarning) as caught:
        result = _vae_fit(True, epochs=2, batch_size=8, accumulate=2)
    assert result.steps == 6
    ours = [w for w in caught if BATCH_NORM in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert "'encoder.1'" in message and "accumulate=2" in message and "LayerNorm" in message
    assert ours[0].category is TrainingWarning and ours[0].filename == __file__  # points at the caller


@pytest.mark.parametrize("batch_norm, accumulate", [(True, 1), (False, 2)])
def test_no_batch_norm_warning_without_both_batch_norm_and_accumulation(batch_norm, accumulate):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _vae_fit(batch_norm, epochs=1, batch_size=8, accumulate=accumulate)
    assert not [w for w in caught if BATCH_NORM in str(w.message)]


def test_the_batch_norm_warning_names_several_ranks_and_spares_running_statistics():
    from hybridpgm.train.batch_split_checks import batch_norm_warning

    message = batch_norm_warning(BatchNormRegression().module.train(), 1, 2)
    assert "with 2 ranks each rank normalises its own shard" in message and "('1')" in message
    assert "micro-batch" not in message  # accumulate=1: the ranks alone
    assert batch_norm_warning(BatchNormRegression().module.eval(), 2, 2) is None  # running statistics: exact


@pytest.mark.filterwarnings(f"ignore:{BATCH_NORM}")
def test_a_one_row_micro_batch_under_batch_norm_names_the_micro_batch_and_the_fix():
    with pytest.raises(ConfigError) as caught:
        _vae_fit(True, batch_size=6, accumulate=4, drop_last=True)
    message = str(caught.value)
    assert message.startswith("micro-batch 3 of 4 at step 0 has one row: the batch has 6 rows (batch_size=6), and "
                              "accumulate=4 splits it into micro-batches of 2, 2, 1, 1 rows"), message
    assert "use a batch_size of at least 8" in message and "lower accumulate to at most 3" in message
    assert "micro-batch 3 of 4 (1 row)" in message  # the model's own message, with the micro-batch as its origin


@pytest.mark.filterwarnings(f"ignore:{BATCH_NORM}")
def test_the_last_incomplete_batch_split_to_one_row_asks_for_drop_last():
    x, y = regression_data(n=14)
    # refused at step 0 since session 41 (hybridpgm/train/one_row_batches.py; at step 1 before)
    with pytest.raises(ConfigError, match=r"^fit: the data's 14 examples in batches of batch_size=8 end each epoch "
                                          r"with a batch of 6 rows, which accumulate=4 splits into micro-batches of "
                                          r"2, 2, 1, 1 rows, but batch norm layer '1' \(BatchNorm1d, training mode\)"
                                          r".*pass drop_last=True"):
        fit(BatchNormRegression(), (x, y), batch_size=8, accumulate=4, shuffle=False, progress=False, seed=0)


@pytest.mark.filterwarnings(f"ignore:{BATCH_NORM}")
def test_a_one_row_micro_batch_the_first_step_misses_names_the_micro_batch(monkeypatch):
    """The message at the step itself, where the first step's check does not see it (here switched off)."""
    import contextlib

    from hybridpgm.train import trainer
    monkeypatch.setattr(trainer, "refusing_one_row_last_batch", lambda *a, **k: contextlib.nullcontext())
    x, y = regression_data(n=14)
    with pytest.raises(ConfigError, match=r"micro-batch 3 of 4 at step 1 has one row: the epoch's last, incomplete "
                                          r"batch has 6 rows \(batch_size=8\), and accumulate=4 splits it into "
                                          r"micro-batches of 2, 2, 1, 1 rows, but batch normalisation in training "
                                          r"mode \('1'\).*pass drop_last=True.*Expected more than 1 value"):
        fit(BatchNormRegression(), (x, y), batch_size=8, accumulate=4, shuffle=False, progress=False, seed=0)


def test_a_non_decomposable_objective_refuses_accumulation():
    with pytest.raises(ConfigError, match=r"^Coupled is not decomposable \(its decomposable attribute is False\): "
                                          r"its loss on a batch is not the size-weighted mean .*accumulate=2 would "
                                          r"split each batch into 2 micro-batches.*accumulate=1 in one process$"):
        fit(Coupled(), regression_data(), batch_size=8, accumulate=2, progress=False, seed=0)
    assert fit(Coupled(), regression_data(), batch_size=8, progress=False, seed=0).steps == 8
    assert fit(LinearRegression(), regression_data(), batch_size=8, accumulate=2, progress=False, seed=0).steps == 8


def test_a_non_decomposable_objective_refuses_several_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda timeout_s=None: DistributedContext(rank=0, world_size=2))
    with pytest.raises(ConfigError, match=r"^Coupled is not decomposable .*yet 2 ranks \(torchrun\) would each take a "
                                          r"shard of the batch, which would train the mean"):
        fit(Coupled(), regression_data(), batch_size=8, progress=False, seed=0)  # refused before any collective
