"""The settings a callback's checkpointed state is kept under (EvaluateEvery's ``every``; EarlyStopping's
monitor, mode, min_delta and patience) are saved with it, and a resume with other settings is refused unless
hyperparameters are overridden (hybridpgm/train/callbacks.py: check_callback_settings)."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import CheckpointError, TrainingInterrupted
from hybridpgm.train import EarlyStopping, EvaluateEvery
from hybridpgm.train.callback_states import callback_states, check_callback_settings
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, TermAt, regression_data


def _metrics(objective):
    x, y = regression_data()
    mse = ((objective.module(x) - y) ** 2).mean().item()
    return {"mse": mse, "neg": -mse}


def _run(ckpt, stopper, every=1, callbacks=(), **kwargs):
    return fit(LinearRegression(), regression_data(), batch_size=16, epochs=3, progress=False, seed=0,
               checkpoint=ckpt, optim=functools.partial(torch.optim.SGD, lr=0.05),
               callbacks=[EvaluateEvery(every, _metrics), stopper, *callbacks], **kwargs)


@pytest.mark.parametrize("stopper, every, setting, was, now", [
    (EarlyStopping("neg", patience=4), 1, "monitor", "'mse'", "'neg'"),
    (EarlyStopping("mse", patience=4, mode="max"), 1, "mode", "'min'", "'max'"),
    (EarlyStopping("mse", patience=5), 1, "patience", "4", "5"),
    (EarlyStopping("mse", patience=4, min_delta=0.5), 1, "min_delta", "0.0", "0.5"),
    (EarlyStopping("mse", patience=4), 2, "every", "1", "2"),
])
def test_a_resume_with_other_callback_settings_is_refused_naming_them(tmp_path, stopper, every, setting, was, now):
    """Before, only the class was matched: the old monitor's best value was compared with the new one's."""
    ckpt = tmp_path / "run.pt"
    with pytest.raises(TrainingInterrupted):
        _run(ckpt, EarlyStopping("mse", patience=4), callbacks=[TermAt(3)])
    saved = load_checkpoint(ckpt)["callbacks"]
    assert saved[0]["settings"] == {"every": 1}
    assert saved[1]["settings"] == {"monitor": "mse", "mode": "min", "min_delta": 0.0, "patience": 4}
    name = "EvaluateEvery" if setting == "every" else "EarlyStopping"
    with pytest.raises(CheckpointError, match=rf"'{ckpt}'.*{name} {setting}: checkpoint {was}, requested {now}.*"
                                              "override_hyperparameters=True"):
        _run(ckpt, stopper, every=every)
    assert load_checkpoint(ckpt)["step"] == 3  # untouched
    result = _run(ckpt, stopper, every=every, override_hyperparameters=True)
    assert result.steps > 3


def test_an_override_with_another_monitor_starts_its_early_stopping_afresh(tmp_path):
    """The best value of 'mse' (min) is not the best of 'neg' (max): the stopper's state is reset, so the
    first 'neg' seen after the resume is its best; another patience keeps the best and the counters."""
    first = EarlyStopping("mse", patience=4)
    first.best, first.bad_rounds, first._seen = 0.25, 2, 7
    saved = callback_states([first])
    other = EarlyStopping("neg", patience=4, mode="max")
    with pytest.raises(CheckpointError, match="monitor: checkpoint 'mse', requested 'neg'; EarlyStopping mode"):
        check_callback_settings("run.pt", [other], saved)
    loaded = check_callback_settings("run.pt", [other], saved, override=True)
    assert loaded[0]["state"] == {"best": None, "bad_rounds": 0, "seen": 0}
    assert saved[0]["state"] == {"best": 0.25, "bad_rounds": 2, "seen": 7}  # the checkpoint's list is not changed
    patient = EarlyStopping("mse", patience=9)
    assert check_callback_settings("run.pt", [patient], saved, override=True)[0]["state"] == saved[0]["state"]


def test_an_early_stopping_that_has_observed_nothing_resumes_under_other_settings():
    """A misspelt monitor (never logged) fails the run at its end; correcting it resumes (tests/train/
    test_fit_end.py): the saved state owes nothing to the old monitor."""
    saved = callback_states([EarlyStopping("val_los")])
    assert check_callback_settings("run.pt", [EarlyStopping("val_loss")], saved) == saved
    seen = callback_states([EarlyStopping("val_los")])
    seen[0]["state"]["seen"] = 1
    with pytest.raises(CheckpointError, match="monitor: checkpoint 'val_los', requested 'val_loss'"):
        check_callback_settings("run.pt", [EarlyStopping("val_loss")], seen)


def test_older_states_without_settings_are_not_compared():
    saved = [{"class": "hybridpgm.train.callbacks.EarlyStopping", "state": {"best": 1.0, "bad_rounds": 1, "seen": 2}}]
    assert check_callback_settings("run.pt", [EarlyStopping("anything", mode="max")], saved) == saved
    assert check_callback_settings("run.pt", [EarlyStopping("x")], None) is None
