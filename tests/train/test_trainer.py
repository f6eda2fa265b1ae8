"""hybridpgm.fit (hybridpgm/train/trainer.py): the loss decreases and is recorded, accumulation, seeds, resuming
after an interruption or a SIGKILL, divergence, players, optimizers, evaluation and stopping, datasets, and
the run's length."""

import functools
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hybridpgm
from hybridpgm import fit
from hybridpgm.errors import TrainingDivergedError
from hybridpgm.train import EarlyStopping, EvaluateEvery, load_checkpoint
from tests.train.helpers import DivergeAt, KillAt, LinearRegression, TwoPlayer, regression_data
from tests.train.vae_fit import _fit_vae, _params


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
    from tests.train.vae_fit import _fit_vae

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


def test_public_api_exports_fit():
    assert hybridpgm.fit is fit


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
