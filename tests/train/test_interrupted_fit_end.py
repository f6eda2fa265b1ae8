"""A run interrupted (SIGTERM/SIGINT) runs its callbacks' ``on_fit_end`` exactly once, in the call that resumes
it, also when the signal came during the last step or with a callback's stop: then the resume has no step left
and runs ``on_fit_end`` at once, so the resumed run ends as the uninterrupted one does."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingInterrupted
from hybridpgm.train import EvaluateEvery
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, TermAt, regression_data

STEPS = 8  # 2 epochs of 4 batches


class Ends:
    """Counts the calls of ``on_fit_end`` (one object across the interrupted and the resumed call)."""

    def __init__(self):
        self.ended = []

    def on_step_end(self, info):
        pass

    def on_fit_end(self, info):
        self.ended.append(info.step)


class StopAt:
    """Requests the stop at the end of step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, info):
        if info.step == self.step:
            info.request_stop()


def _mse(objective):
    x, y = regression_data()
    return ((objective.module(x) - y) ** 2).mean()


def _fit(ckpt, callbacks):
    objective = LinearRegression()
    result = fit(objective, regression_data(), batch_size=16, epochs=2, progress=False, seed=0, checkpoint=ckpt,
                 checkpoint_every=1, optim=functools.partial(torch.optim.SGD, lr=0.05), callbacks=callbacks)
    return objective, result


@pytest.mark.parametrize("signal_at, stop_at", [(STEPS, None), (5, 5), (4, None)])
def test_an_interrupted_run_resumes_to_the_uninterrupted_end(tmp_path, signal_at, stop_at):
    """Before, a signal during the last step (or the step a callback stopped at) wrote the checkpoint with
    ``fit_end_pending`` False: the resume had no step to run and never ran ``on_fit_end`` (the end-of-run
    evaluation was missing from the history)."""
    stop = [StopAt(stop_at)] if stop_at is not None else []
    ends = Ends()
    _, reference = _fit(tmp_path / "whole.pt", [EvaluateEvery(3, _mse, name="val"), *stop, ends])
    assert ends.ended == [stop_at or STEPS]
    ckpt, ends = tmp_path / "run.pt", Ends()
    with pytest.raises(TrainingInterrupted):
        _fit(ckpt, [EvaluateEvery(3, _mse, name="val"), *stop, ends, TermAt(signal_at)])
    assert ends.ended == [] and load_checkpoint(ckpt)["fit_end_pending"] is True
    objective, resumed = _fit(ckpt, [EvaluateEvery(3, _mse, name="val"), *stop, ends])
    assert ends.ended == [stop_at or STEPS]  # exactly once, in the resumed call
    assert resumed.history.metrics == reference.history.metrics and resumed.history.loss == reference.history.loss
    assert (resumed.steps, resumed.stopped_early) == (reference.steps, reference.stopped_early)
    whole, saved = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(ckpt)
    assert saved["callbacks"] == whole["callbacks"] and saved["fit_end_pending"] is False
    assert all(torch.equal(saved["module"][k], whole["module"][k]) for k in whole["module"])
    _fit(ckpt, [EvaluateEvery(3, _mse, name="val"), *stop, ends])  # finished: on_fit_end does not run again
    assert ends.ended == [stop_at or STEPS]


def test_the_periodic_checkpoint_of_the_last_step_marks_on_fit_end_pending(tmp_path, monkeypatch):
    """A run killed between the last step's periodic checkpoint and the end-of-run one resumes with no step
    left: the periodic one is marked so that the resume runs ``on_fit_end``."""
    from hybridpgm.train import run_checkpoint

    written = []
    write = run_checkpoint.RunCheckpoint.write

    def recording(self, step, stopped=False, pending=False):
        written.append((step, pending))
        return write(self, step, stopped, pending)

    monkeypatch.setattr(run_checkpoint.RunCheckpoint, "write", recording)
    _fit(tmp_path / "run.pt", [Ends()])
    assert written[STEPS - 2:] == [(STEPS - 1, False), (STEPS, True), (STEPS, True), (STEPS, False)]
