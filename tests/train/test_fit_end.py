"""The end of a run: ``fit`` writes its final checkpoint before the callbacks' ``on_fit_end`` runs, so a
callback that fails there loses no step, and running the same call again resumes and finishes it; and
however ``fit`` ends, it leaves no gradient in a player's ``.grad`` and no progress bar or heartbeat open."""

import contextlib
import copy
import functools

import pyro
import pytest
import torch
import tqdm
from pyro.infer import SVI, Trace_ELBO

from hybridpgm import VAE, SVIObjective, fit
from hybridpgm.errors import ConfigError, TrainingDivergedError
from hybridpgm.train import EarlyStopping, EvaluateEvery
from hybridpgm.train import run_monitors
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import DivergeAt, LinearRegression, regression_data

STEPS = 8  # 2 epochs of 4 batches


class LogsValLoss:
    """A user's callback that logs a metric itself (so EarlyStopping checks its name at the end only)."""

    def on_step_end(self, info):
        info.history.log_metric("val_loss", info.step, 1.0 / info.step)


class Steps:
    def __init__(self):
        self.steps, self.ended = 0, 0

    def on_step_end(self, info):
        self.steps += 1

    def on_fit_end(self, info):
        self.ended += 1


def _fit(ckpt, callbacks, **kwargs):
    objective = LinearRegression()
    result = fit(objective, regression_data(), batch_size=16, epochs=2, progress=False, seed=0, checkpoint=ckpt,
                 optim=functools.partial(torch.optim.SGD, lr=0.05), callbacks=callbacks, **kwargs)
    return objective, result


def _mse(objective):
    x, y = regression_data()
    return ((objective.module(x) - y) ** 2).mean()


def test_a_failing_end_of_run_check_keeps_every_step_and_a_rerun_finishes(tmp_path):
    """Before, EarlyStopping's end-of-run check raised before the final checkpoint: nothing on disk."""
    ckpt = tmp_path / "run.pt"
    reference, expected = _fit(None, [LogsValLoss()])
    with pytest.raises(ConfigError, match="monitored 'val_los'"):
        _fit(ckpt, [LogsValLoss(), EarlyStopping("val_los", patience=3)])
    saved = load_checkpoint(ckpt)
    assert saved["step"] == STEPS and saved["fit_end_pending"] is True
    steps = Steps()
    again, result = _fit(ckpt, [LogsValLoss(), EarlyStopping("val_loss", patience=3), steps])
    assert steps.steps == 0 and steps.ended == 1  # nothing retrained; the end of the run ran
    assert result.steps == STEPS and result.history.loss == expected.history.loss
    assert all(torch.equal(a, b) for a, b in zip(again.module.parameters(), reference.module.parameters()))
    assert load_checkpoint(ckpt)["fit_end_pending"] is False
    steps = Steps()
    _fit(ckpt, [LogsValLoss(), EarlyStopping("val_loss", patience=3), steps])  # finished: no end again
    assert (steps.steps, steps.ended) == (0, 0)


@pytest.mark.parametrize("value, what", [
    (None, "None"),
    ("0.5", "a str"),
    (True, "a bool"),
    (torch.ones(2), r"a tensor of shape \(2,\) and dtype torch.float32"),
    ({"mse": [0.5]}, "a list"),
])
def test_evaluate_every_refuses_what_is_not_a_number_naming_it(tmp_path, value, what):
    """Before, float(None) raised a raw TypeError (True was logged as 1.0), after the whole run, with no
    checkpoint written; now a ConfigError names the callback, the metric and the type, and the run is kept."""
    ckpt = tmp_path / "run.pt"
    key = "mse" if isinstance(value, dict) else "val"
    with pytest.raises(ConfigError, match=rf"EvaluateEvery\(name='val'\): fn returned {what} for the metric "
                                          rf"'{key}'; it must return a real number"):
        _fit(ckpt, [EvaluateEvery(1000, lambda objective: value, name="val")])
    assert load_checkpoint(ckpt)["step"] == STEPS


def test_a_rerun_after_a_failed_end_of_run_evaluation_ends_as_an_uninterrupted_run(tmp_path):
    _, reference = _fit(tmp_path / "whole.pt", [EvaluateEvery(3, _mse, name="val")])
    assert [step for step, _ in reference.history.metrics["val"]] == [3, 6, STEPS]
    calls = []

    def fails_at_the_end(objective):  # the third evaluation is the end-of-run one
        calls.append(1)
        return None if len(calls) == 3 else _mse(objective)

    ckpt = tmp_path / "run.pt"
    with pytest.raises(ConfigError, match="fn returned None"):
        _fit(ckpt, [EvaluateEvery(3, fails_at_the_end, name="val")])
    assert load_checkpoint(ckpt)["step"] == STEPS
    _, result = _fit(ckpt, [EvaluateEvery(3, _mse, name="val")])
    assert result.history.metrics == reference.history.metrics and result.history.loss == reference.history.loss
    whole, resumed = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(ckpt)
    assert resumed["callbacks"] == whole["callbacks"] and resumed["history"]["metrics"] == whole["history"]["metrics"]


def test_the_end_of_run_evaluation_is_in_the_result_and_the_checkpoint(tmp_path):
    """The order changed, not what is saved: on_fit_end's evaluation is in both, and not run twice."""
    ckpt = tmp_path / "run.pt"
    _, result = _fit(ckpt, [EvaluateEvery(1000, _mse, name="val")])
    saved = load_checkpoint(ckpt)
    assert [step for step, _ in result.history.metrics["val"]] == [STEPS]
    assert saved["history"]["metrics"] == {"val": [[STEPS, result.history.metrics["val"][0][1]]]}
    assert saved["callbacks"][0]["state"] == {"last_step": STEPS} and saved["fit_end_pending"] is False
    _, again = _fit(ckpt, [EvaluateEvery(1000, _mse, name="val")])  # finished: not evaluated twice
    assert again.history.metrics == result.history.metrics


class _WeightOnly(LinearRegression):
    """The weight is the only player; the bias (in the loss, in no player) carries a gradient of the caller's."""

    def __init__(self):
        super().__init__()
        self.module.bias.grad = torch.full_like(self.module.bias, 7.0)

    def players(self):
        return {"fit": [self.module.weight]}


class _FailAt:
    """A callback raising ``error`` at the end of step ``step``: after that step's update, before the next."""

    def __init__(self, step, error):
        self.step, self.error, self.grads_seen = step, error, None

    def on_step_end(self, info):
        if info.step == self.step:
            self.grads_seen = info.objective.module.weight.grad is not None
            raise self.error


class _StopAt:
    def on_step_end(self, info):
        if info.step == 3:
            info.request_stop()


class _InterruptedSGD(torch.optim.SGD):
    """SGD whose third step is interrupted (a Ctrl-C after the micro-batches' backward, before the update)."""

    def __init__(self, params):
        super().__init__(params, lr=0.05)
        self.calls, self.grads_seen = 0, None

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 3:
            self.grads_seen = all(p.grad is not None for group in self.param_groups for p in group["params"])
            raise KeyboardInterrupt
        return super().step(closure)


def _ending(how):
    """``(objective, fit keyword arguments, the exception expected, a function telling whether a player had
    gradients when the run was cut short)`` for each way a run ends."""
    kwargs = {"optim": functools.partial(torch.optim.SGD, lr=0.05)}
    if how == "end":
        return _WeightOnly(), kwargs, None, None
    if how == "early stop":
        return _WeightOnly(), {**kwargs, "callbacks": [_StopAt()]}, None, None
    if how == "divergence":  # the refused step's NaN gradients
        return DivergeAt(_WeightOnly(), 3), kwargs, TrainingDivergedError, None
    if how == "interrupted step":  # between the last micro-batch's backward and the optimizer's step
        made = []

        def factory(params):
            made.append(_InterruptedSGD(params))
            return made[-1]

        return _WeightOnly(), {"optim": factory, "accumulate": 2}, KeyboardInterrupt, lambda: made[0].grads_seen
    error = RuntimeError("a callback's bug") if how == "callback error" else KeyboardInterrupt()
    callback = _FailAt(3, error)
    return _WeightOnly(), {**kwargs, "callbacks": [callback]}, type(error), lambda: callback.grads_seen


@pytest.mark.parametrize("how", ["end", "early stop", "callback error", "callback interrupt", "interrupted step",
                                 "divergence"])
def test_fit_leaves_no_gradient_in_a_player_however_it_ends(how):
    """Before, the last step's gradients (or an interrupted step's partial sum, or a refused step's NaN) stayed
    in .grad.  The bias is in no player: fit never writes its gradient, and leaves the caller's there."""
    objective, kwargs, expected, had_gradients = _ending(how)
    users_grad = objective.module.bias.grad
    with pytest.raises(expected) if expected else contextlib.nullcontext():
        fit(objective, regression_data(), batch_size=16, epochs=2, progress=False, seed=0, **kwargs)
    if had_gradients is not None:
        assert had_gradients()  # the run was cut short with gradients in .grad
    assert objective.module.weight.grad is None
    assert objective.module.bias.grad is users_grad and torch.equal(users_grad, torch.full((1,), 7.0))


def _one_svi_step(vae, x):
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, pyro.optim.SGD({"lr": 0.1}), Trace_ELBO())
    pyro.set_rng_seed(1)
    svi.step(x)
    return vae.encoder[0].weight.detach().clone()


def test_a_plain_pyro_svi_step_after_fit_is_the_step_from_cleared_gradients():
    """Pyro's SVI.step adds to .grad and zeroes it after its step: before, its first step after fit also took
    fit's last gradient (max |difference| 0.03 on this VAE)."""
    torch.manual_seed(0)
    x = (torch.rand(64, 16) < 0.3).float()
    vae = VAE(16, z_dim=2, hidden=[8])
    fit(SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=32, progress=False, seed=0)
    state = copy.deepcopy(vae.state_dict())
    after_fit = _one_svi_step(vae, x)
    vae.load_state_dict(state)
    for p in vae.parameters():
        p.grad = None
    assert torch.equal(after_fit, _one_svi_step(vae, x))


class _InterruptsAtStart:
    def on_fit_start(self, start):
        raise KeyboardInterrupt

    def on_step_end(self, info):
        pass


@pytest.mark.parametrize("make", [lambda: EarlyStopping("val_loss"), _InterruptsAtStart], ids=["config", "interrupt"])
def test_a_callback_failing_at_the_start_leaves_no_progress_bar_open(make):
    """Before, the bar was made before on_fit_start ran, outside the try that closes it: one more open bar per
    failed call for as long as the exception lived (a notebook keeps the last one)."""
    before = len(tqdm.tqdm._instances)
    kept = []
    for _ in range(3):  # a notebook cell run again
        with pytest.raises((ConfigError, KeyboardInterrupt)) as raised:
            fit(LinearRegression(), regression_data(), batch_size=16, epochs=1, progress=True, callbacks=[make()])
        kept.append(raised.value)  # its traceback holds fit's frame, and so the bar, alive
    assert len(tqdm.tqdm._instances) == before


def test_the_heartbeat_stops_when_a_callback_fails_at_the_start(monkeypatch):
    """Under torchrun the heartbeat thread was started before on_fit_start, outside the try that stops it."""
    events = []

    @contextlib.contextmanager
    def recording(context):
        events.append("started")
        try:
            yield None
        finally:
            events.append("stopped")

    monkeypatch.setattr(run_monitors, "beating", recording)
    with pytest.raises(KeyboardInterrupt):
        fit(LinearRegression(), regression_data(), batch_size=16, epochs=1, progress=False,
            callbacks=[_InterruptsAtStart()])
    assert events == ["started", "stopped"]
