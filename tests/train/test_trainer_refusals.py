"""hybridpgm.fit's refusals (hybridpgm/train/trainer.py): bad options, losses, checkpoints, data loaders,
devices, parameters and scheduler factories, each named before the first step."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError, ConfigError, DeviceError
from hybridpgm.train import EarlyStopping, load_checkpoint
from tests.train.helpers import LinearRegression, TwoPlayer, regression_data
from tests.train.vae_fit import _params


@pytest.mark.parametrize("kwargs, message", [
    (dict(accumulate=0), "accumulate"),
    (dict(batch_size=4, accumulate=8), "cannot split"),
    (dict(epochs=0), "epochs"),
    (dict(checkpoint_every=0), "checkpoint_every"),
    (dict(optim={"other": torch.optim.SGD}), "players"),
    (dict(epochs=True), "epochs must be a positive integer, got True"),
    (dict(batch_size=2.0), "batch_size must be a positive integer, got 2.0"),
    (dict(max_steps=-3), "max_steps must be a positive integer, got -3"),
    (dict(seed=1.5), "seed must be a non-negative integer, got 1.5"),
    (dict(seed=-1), "seed must be a non-negative integer, got -1"),
    (dict(seed="7"), "seed must be a non-negative integer, got '7'"),
    (dict(seed=2**32), "seed must be below 2\\*\\*32"),
    (dict(clip_grad_norm="1"), "clip_grad_norm must be a finite number > 0, got '1'"),
    (dict(clip_grad_norm=float("inf")), "clip_grad_norm must be a finite number > 0, got inf"),
    (dict(collective_timeout=-1), "collective_timeout must be a finite number > 0, got -1"),
    (dict(callbacks=EarlyStopping("loss")), "iterable of callbacks .*got EarlyStopping; wrap a single one"),
    (dict(callbacks=lambda info: None), "got function"),
    (dict(optim=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)), "optim must be a factory .*got an "
                                                                               "instance of SGD"),
    (dict(optim={"fit": torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)}), "instance of SGD"),
    (dict(lr_scheduler=torch.optim.lr_scheduler.StepLR(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1),
                                                       1)), "lr_scheduler must be a factory called with an optimizer"),
])
def test_bad_configuration_raises_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        fit(LinearRegression(), regression_data(), progress=False, **kwargs)


def test_numpy_integer_counts_and_the_largest_seed_are_accepted():
    import numpy as np

    result = fit(LinearRegression(), regression_data(), epochs=np.int64(2), batch_size=np.int32(32),
                 seed=2**32 - 1, progress=False)
    assert result.steps == 4


class _LossOf:
    """An objective whose loss is ``make(module, batch)``."""

    def __init__(self, make):
        self.module, self.make = torch.nn.Linear(5, 1), make

    def players(self):
        return {"fit": list(self.module.parameters())}

    def loss(self, player, batch):
        return self.make(self.module, batch)


@pytest.mark.parametrize("make, message", [
    (lambda m, b: 1.0, "_LossOf.loss\\('fit'\\) returned float, expected a scalar tensor"),
    (lambda m, b: ((m(b[0]) - b[1]) ** 2).mean().detach(), "without a gradient \\(requires_grad=False\\)"),
])
def test_a_loss_that_cannot_be_differentiated_is_named(make, message):
    with pytest.raises(ConfigError, match=message):
        fit(_LossOf(make), regression_data(), progress=False)


def test_a_checkpoint_path_that_is_a_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory; pass the path of a file in it"):
        fit(LinearRegression(), regression_data(), checkpoint=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_dataloader_is_refused_with_advice():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*regression_data()))
    with pytest.raises(ConfigError, match="loader.dataset"):
        fit(LinearRegression(), loader, progress=False)


def test_cuda_request_without_cuda_is_a_device_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        fit(LinearRegression(), regression_data(), device="cuda", progress=False)


def test_checkpoint_of_another_objective_is_refused(tmp_path):
    ckpt = tmp_path / "a.pt"
    fit(LinearRegression(), regression_data(), checkpoint=ckpt, progress=False, seed=0)
    with pytest.raises(CheckpointError, match="players"):
        fit(TwoPlayer(), regression_data(d_in=3), checkpoint=ckpt, progress=False)


def test_parameters_outside_the_module_are_refused():
    objective = LinearRegression()
    stray = torch.nn.Parameter(torch.zeros(1))
    objective.players = lambda: {"fit": [stray]}
    with pytest.raises(ConfigError, match="outside"):
        fit(objective, regression_data(), progress=False)


@pytest.mark.parametrize("factory, returned", [(lambda optimizer: None, "NoneType"),
                                               (lambda optimizer: optimizer, "SGD")])
def test_an_lr_scheduler_factory_that_returns_no_scheduler_is_refused_before_the_first_step(factory, returned):
    """Before, None failed after the first update and an optimizer was stepped twice a step (parameters moved
    twice as far)."""
    objective = LinearRegression()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(ConfigError, match=f"lr_scheduler factory of player 'fit' returned {returned}, not a "
                                          "learning-rate scheduler"):
        fit(objective, regression_data(), batch_size=16, optim=functools.partial(torch.optim.SGD, lr=0.1),
            lr_scheduler=factory, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, objective.module.parameters()))


def test_overwrite_no_is_refused_and_keeps_the_checkpoint(tmp_path):
    """Before, overwrite="no" was truthy: fit deleted the finished run's checkpoint and trained afresh."""
    ckpt = tmp_path / "run.pt"
    x, y = regression_data(32)
    fit(LinearRegression(), (x, y), epochs=2, batch_size=16, checkpoint=ckpt, progress=False, seed=0)
    saved = ckpt.read_bytes()
    with pytest.raises(ConfigError, match="fit overwrite must be True or False, got 'no'"):
        fit(LinearRegression(), (x, y), epochs=2, batch_size=16, checkpoint=ckpt, progress=False, seed=0,
            overwrite="no")
    assert ckpt.read_bytes() == saved


@pytest.mark.parametrize("option", ["overwrite", "override_hyperparameters", "skip_nonfinite", "progress",
                                    "shuffle", "drop_last"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_fit_switches_are_bools_checked_before_any_step(option, value):
    """Before, each took any truthy value (shuffle="no" shuffled, drop_last="no" dropped data)."""
    objective = LinearRegression()
    before = _params(objective.module)
    with pytest.raises(ConfigError, match=f"fit {option} must be True or False, got {value!r}"):
        fit(objective, regression_data(16), batch_size=4, progress=False if option != "progress" else value,
            seed=0, **({option: value} if option != "progress" else {}))
    assert all(torch.equal(v, objective.module.state_dict()[k]) for k, v in before.items())
