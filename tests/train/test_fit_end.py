"""The end of a run: ``fit`` writes its final checkpoint before the callbacks' ``on_fit_end`` runs, so a
callback that fails there loses no step, and running the same call again resumes and finishes it."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import ConfigError
from hybridpgm.train import EarlyStopping, EvaluateEvery
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data

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
