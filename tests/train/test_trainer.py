import functools
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hybridpgm
from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.errors import CheckpointError, ConfigError, DeviceError, TrainingDivergedError
from hybridpgm.train import EarlyStopping, EvaluateEvery, load_checkpoint
from tests.train.helpers import DivergeAt, KillAt, LinearRegression, TwoPlayer, regression_data


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _fit_vae(tmp_path=None, **kwargs):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(96, 12, generator=torch.Generator().manual_seed(3)))
    vae = VAE(12, 3, (8,))
    options = dict(epochs=3, batch_size=16, seed=5, progress=False)
    options.update(kwargs)
    result = fit(SVIObjective(vae.model, vae.guide), x, **options)
    return vae, result


def test_loss_decreases_and_history_is_recorded():
    objective = LinearRegression()
    result = fit(objective, regression_data(), epochs=20, batch_size=16, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=0.05))
    losses = result.history.loss["fit"]
    assert result.steps == 20 * 4 == len(losses) == result.history.step[-1]
    assert losses[-1] < 0.1 * losses[0]
    assert all(t > 0 for t in result.history.examples_per_second)
    assert result.history.wall_time == sorted(result.history.wall_time)


@pytest.mark.parametrize("accumulate", [2, 4, 16])
def test_accumulation_equals_one_large_batch(accumulate):
    data = regression_data(n=64)
    reference = LinearRegression()
    fit(reference, data, epochs=2, batch_size=32, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9))
    accumulated = LinearRegression()
    fit(accumulated, data, epochs=2, batch_size=32, accumulate=accumulate, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9))
    for name, value in _params(reference.module).items():
        torch.testing.assert_close(_params(accumulated.module)[name], value, rtol=1e-6, atol=1e-6)


def test_uneven_last_batch_is_weighted_by_its_size():
    data = regression_data(n=50)  # batches of 32 and 18; 18 splits 5/5/4/4
    a, b = LinearRegression(), LinearRegression()
    fit(a, data, epochs=1, batch_size=32, progress=False, seed=0, optim=functools.partial(torch.optim.SGD, lr=0.1))
    fit(b, data, epochs=1, batch_size=32, accumulate=4, progress=False, seed=0,
        optim=functools.partial(torch.optim.SGD, lr=0.1))
    for name, value in _params(a.module).items():
        torch.testing.assert_close(_params(b.module)[name], value, rtol=1e-6, atol=1e-6)


def test_same_seed_same_run_different_seed_different_run():
    a, _ = _fit_vae()
    b, _ = _fit_vae()
    c, _ = _fit_vae(seed=6)
    pa, pb, pc = _params(a), _params(b), _params(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)



def test_resume_after_interruption_is_bitwise_identical(tmp_path):
    uninterrupted, _ = _fit_vae()
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _fit_vae(checkpoint=ckpt, checkpoint_every=2, callbacks=[KillAt(7)])
    assert load_checkpoint(ckpt)["step"] == 6
    resumed, result = _fit_vae(checkpoint=ckpt, checkpoint_every=2)
    assert result.steps == 18 and len(result.history.step) == 18
    expected, got = _params(uninterrupted), _params(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {root!r})
    from tests.train.test_trainer import _fit_vae

    class Kill:
        def on_step_end(self, info):
            if info.step == 9:
                os.kill(os.getpid(), signal.SIGKILL)

    _fit_vae(checkpoint={ckpt!r}, checkpoint_every=4, callbacks=[Kill()])
    """
)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "killed.pt"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = KILL_SCRIPT.format(root=root, ckpt=str(ckpt))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert load_checkpoint(ckpt)["step"] == 8
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    resumed, _ = _fit_vae(checkpoint=ckpt, checkpoint_every=4)
    uninterrupted, _ = _fit_vae()
    expected, got = _params(uninterrupted), _params(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "nan.pt"
    objective = DivergeAt(LinearRegression(), step=3)
    with pytest.raises(TrainingDivergedError) as info:
        fit(objective, regression_data(), epochs=3, batch_size=16, checkpoint=ckpt, checkpoint_every=1,
            progress=False, seed=0)
    assert info.value.step == 3 and info.value.player == "fit"
    assert "step 3" in str(info.value) and "'fit'" in str(info.value)
    saved = load_checkpoint(ckpt)
    assert saved["step"] == 3
    current = _params(objective.module)
    assert all(torch.equal(saved["module"][k], current[k]) for k in current)  # no update applied
    assert all(torch.isfinite(v).all() for v in saved["module"].values())


def test_two_players_only_move_their_own_parameters():
    objective = TwoPlayer()
    before = _params(objective.module)
    seen = []

    class Spy:
        def on_step_end(self, info):
            seen.append(dict(info.losses))

    fit(objective, regression_data(d_in=3), epochs=1, batch_size=64, progress=False, seed=0, callbacks=[Spy()],
        optim={"a": functools.partial(torch.optim.SGD, lr=0.1), "b": functools.partial(torch.optim.SGD, lr=0.0)})
    after = _params(objective.module)
    assert not torch.equal(before["a.weight"], after["a.weight"])
    assert torch.equal(before["b.weight"], after["b.weight"])  # lr 0: b's gradient never leaked into a's step
    assert set(seen[0]) == {"a", "b"}


@pytest.mark.parametrize("optimizer", [
    functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True),
    functools.partial(torch.optim.RMSprop, lr=0.01),
    functools.partial(torch.optim.Adagrad, lr=0.1),
    functools.partial(torch.optim.Adam, lr=0.05),
])
def test_optimizers_and_schedules(optimizer):
    objective = LinearRegression()
    result = fit(objective, regression_data(), epochs=10, batch_size=16, progress=False, seed=0, optim=optimizer,
                 lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5),
                 clip_grad_norm=10.0)
    assert result.history.loss["fit"][-1] < result.history.loss["fit"][0]
    lr = result.optimizers["fit"].param_groups[0]["lr"]
    assert lr == pytest.approx(optimizer.keywords["lr"] * 0.5 ** 4)


def test_evaluate_every_and_early_stopping():
    objective = LinearRegression()
    x, y = regression_data()
    evaluate = EvaluateEvery(2, lambda obj: ((obj.module(x) - y) ** 2).mean().item(), name="mse")
    stop = EarlyStopping("mse", patience=1, mode="max")  # stops at the first non-increase
    result = fit(objective, (x, y), epochs=50, batch_size=16, progress=False, seed=0, callbacks=[evaluate, stop],
                 optim=functools.partial(torch.optim.SGD, lr=0.05))
    assert result.stopped_early and result.steps == 4
    assert [s for s, _ in result.history.metrics["mse"]] == [2, 4]
    assert objective.module.training


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


def test_public_api_exports_fit():
    assert hybridpgm.fit is fit


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


def test_reduce_lr_on_plateau_is_stepped_with_the_player_s_loss():
    """Before, its step() was called without the metric: TypeError after the first update."""
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.5)
    result = fit(LinearRegression(), regression_data(), batch_size=16, epochs=20, progress=False, seed=0,
                 optim=functools.partial(torch.optim.SGD, lr=0.2), lr_scheduler=plateau)
    assert result.optimizers["fit"].param_groups[0]["lr"] < 0.2  # the loss stalled at least once: it halved


class _Overflowing(LinearRegression):
    """A loss whose gradients overflow float32 once scaled by fp16's gradient scaler (2**16)."""

    def loss(self, player, batch):
        return super().loss(player, batch) + 1e35 * self.module.bias.sum()


def test_fp16_steps_the_scheduler_only_when_the_scaler_took_the_optimizer_step():
    """Before, the scheduler stepped although the scaler skipped the optimizer's step (torch warned of the
    order, and the schedule ran ahead); under skip_nonfinite it never did."""
    step_lr = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    result = fit(_Overflowing(), regression_data(), batch_size=16, max_steps=3, progress=False, seed=0,
                 precision="fp16", optim=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=step_lr)
    assert result.optimizers["fit"].param_groups[0]["lr"] == 0.1  # every step overflowed: none taken


class _FrozenNormRegression:
    """A regression whose input passes a batch norm the caller froze in eval() (pretrained statistics)."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 1))
        self.norm = self.module[0]

    def players(self):
        return {"fit": list(self.module[1].parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x) - y) ** 2).mean()


def test_fit_keeps_a_frozen_sub_module_frozen_and_puts_every_mode_back():
    """Found by an audit: fit called module.train(), which unfroze a batch norm the caller had put in eval()
    (its running mean moved by 1.2), and left every sub-module in training mode.  EvaluateEvery's train()
    after its evaluation did the same."""
    objective = _FrozenNormRegression()
    objective.norm.eval()
    stats = objective.norm.running_mean.clone()
    seen = []
    evaluate = EvaluateEvery(2, lambda o: seen.append(o.norm.training) or 0.0)
    fit(objective, regression_data(), epochs=2, batch_size=16, seed=0, progress=False, callbacks=[evaluate])
    assert seen and not any(seen)
    assert not objective.norm.training and objective.module.training
    assert torch.equal(objective.norm.running_mean, stats) and int(objective.norm.num_batches_tracked) == 0


def test_a_model_in_eval_trains_in_training_mode_and_is_put_back_in_eval():
    objective = _FrozenNormRegression()
    objective.module.eval()
    modes = []

    class Record:
        def on_step_end(self, info):
            modes.append(info.objective.norm.training)

    fit(objective, regression_data(), epochs=1, batch_size=16, seed=0, progress=False, callbacks=[Record()])
    assert modes and all(modes) and int(objective.norm.num_batches_tracked) > 0
    assert not objective.module.training and not objective.norm.training
    with pytest.raises(TrainingDivergedError):  # put back after an error too
        fit(objective, regression_data(), epochs=1, batch_size=16, seed=0, progress=False,
            optim=functools.partial(torch.optim.SGD, lr=1e30))
    assert not objective.module.training and not objective.norm.training


@pytest.mark.parametrize("kind", ["random_split", "stack"])
def test_fit_trains_on_a_subset_and_a_stack_dataset(kind):
    """Before, fit took a Subset's (random_split's) ``__getitems__`` list of examples as the batch: a list of B
    tuples reached the loss, which failed with a raw error."""
    from torch.utils.data import StackDataset, TensorDataset, random_split

    x, y = regression_data(40)
    if kind == "random_split":
        data, _ = random_split(TensorDataset(x, y), [32, 8], generator=torch.Generator().manual_seed(0))
    else:
        data = StackDataset(x, y)
    seen = []

    class Recording(LinearRegression):
        def loss(self, player, batch):
            seen.append(tuple(t.shape for t in batch))
            return super().loss(player, batch)

    objective = Recording(d_in=5)
    before = _params(objective.module)
    result = fit(objective, data, batch_size=8, max_steps=3, optim=functools.partial(torch.optim.SGD, lr=0.1),
                 seed=0, progress=False)
    assert seen and all(shapes == ((8, 5), (8, 1)) for shapes in seen)
    assert result.steps == 3 == len(result.history.loss["fit"])
    assert not torch.equal(before["weight"], objective.module.weight.detach())


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


def test_max_steps_alone_bounds_the_run_and_epochs_alone_is_one_pass_by_default():
    """Before, ``epochs`` defaulted to 1, so ``max_steps=10`` on 4 batches an epoch silently ran 4 steps."""
    data = regression_data(n=64)  # 4 batches of 16
    assert fit(LinearRegression(), data, batch_size=16, max_steps=10, progress=False, seed=0).steps == 10
    assert fit(LinearRegression(), data, batch_size=16, progress=False, seed=0).steps == 4
    assert fit(LinearRegression(), data, batch_size=16, epochs=2, max_steps=10, progress=False, seed=0).steps == 8
    assert fit(LinearRegression(), data, batch_size=16, epochs=3, max_steps=10, progress=False, seed=0).steps == 10


def test_a_run_with_max_steps_and_a_huge_epochs_resumes_under_the_default_epochs(tmp_path):
    """A checkpoint of the old idiom (``epochs=10**6, max_steps=...``) extends with the default ``epochs``."""
    data, path = regression_data(n=64), tmp_path / "run.pt"
    full, part = LinearRegression(), LinearRegression()
    fit(full, data, batch_size=16, max_steps=10, progress=False, seed=0)
    fit(part, data, batch_size=16, epochs=10**6, max_steps=6, checkpoint=path, progress=False, seed=0)
    resumed = fit(part, data, batch_size=16, max_steps=10, checkpoint=path, progress=False, seed=0)
    assert resumed.steps == 10 and len(resumed.history.loss["fit"]) == 10
    for name, value in _params(full.module).items():
        assert torch.equal(_params(part.module)[name], value)
