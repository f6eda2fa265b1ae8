"""Validation tail, early stopping and calibration report (hybridpgm.gp.validation)."""

from __future__ import annotations

import functools

import pytest
import torch

from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import CheckpointError, ConfigError, DataError, TrainingInterrupted
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, SemiStochasticObjective, calibration, fit_validated
from hybridpgm.gp.validation import split_tail, splittable_size, validation_nll
from tests.train.helpers import KillAt, TermAt

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
)


def test_calibration_of_a_correct_gaussian_is_nominal():
    torch.manual_seed(0)
    mean, sd = torch.randn(20000), torch.rand(20000) + 0.5
    y = mean + sd * torch.randn(20000)
    report = calibration(mean, sd, y)
    assert set(report) == {"coverage_50", "coverage_80", "coverage_95"}
    for level, value in report.items():
        assert abs(value - int(level.split("_")[1]) / 100) < 0.01
    too_narrow = calibration(mean, sd / 3, y)
    assert too_narrow["coverage_95"] < 0.5


def test_calibration_bad_input():
    with pytest.raises(DataError, match="one shape"):
        calibration(torch.zeros(3), torch.ones(3), torch.zeros(4))
    with pytest.raises(ConfigError, match="levels"):
        calibration(torch.zeros(3), torch.ones(3), torch.zeros(3), levels=[1.5])


def test_split_tail_keeps_order():
    x, y = torch.arange(20.0).reshape(10, 2), torch.arange(10.0)
    x_fit, y_fit, x_val, y_val = split_tail(x, y, 0.2, min_size=2)
    assert torch.equal(y_fit, torch.arange(8.0)) and torch.equal(y_val, torch.tensor([8.0, 9.0]))
    assert torch.equal(torch.cat([x_fit, x_val]), x)
    with pytest.raises(ConfigError, match="fraction"):
        split_tail(x, y, 1.0)
    with pytest.raises(DataError, match="validation tail"):
        split_tail(x, y, 0.2)  # 2 held out < min_size 5
    with pytest.raises(DataError, match="10 examples but y has 9"):
        split_tail(x, y[:9])


def test_too_few_examples_to_split_name_the_number_needed():
    """audit_empty: train_deep_kernel with N = 10 said "validation tail of 2 (each side needs at least 5)", not
    how many examples the default fraction 0.2 needs (23: round(0.2 * 23) = 5 held out, 18 fitted; 22 holds out
    4)."""
    from hybridpgm.gp import train_deep_kernel

    with pytest.raises(DataError, match=r"^10 examples cannot be split into training and a validation tail of 2 "
                                        r"\(each side needs at least 5\): a validation fraction of 0.2 needs at "
                                        r"least 23 examples$"):
        train_deep_kernel(torch.randn(10, 1), torch.randn(10))
    with pytest.raises(DataError, match=r"fraction of 0.5 needs at least 4 examples$"):
        split_tail(torch.zeros(3), torch.zeros(3), 0.5, min_size=2)


@pytest.mark.parametrize("fraction,min_size", [(0.2, 5), (0.5, 5), (0.01, 5), (0.9, 2), (0.3, 1)])
def test_splittable_size_is_the_fewest_examples_split_tail_splits(fraction, min_size):
    n = splittable_size(fraction, min_size)
    split_tail(torch.zeros(n), torch.zeros(n), fraction, min_size=min_size)
    for smaller in range(1, n):
        with pytest.raises(DataError, match="validation tail"):
            split_tail(torch.zeros(smaller), torch.zeros(smaller), fraction, min_size=min_size)
    with pytest.raises(ConfigError, match="fraction"):
        splittable_size(1.5)


def _windows(n=80, seed=0):
    return make_windows(synthetic_series(n + 8, period=9.0, noise=0.3, seed=seed).float(), 8)


def test_early_stopping_restores_the_best_weights():
    """A learning rate far too large makes validation NLL worse: the run stops early and the
    returned model is the one with the best validation score, not the last."""
    x, y = _windows()
    x_fit, y_fit, x_val, y_val = split_tail(x, y)
    torch.manual_seed(0)
    model = GPLSTM(x_fit, y_fit, hidden_size=6)
    objective = SemiStochasticObjective(model)
    run = fit_validated(objective, objective.dataset(), x_val, y_val, max_steps=60, eval_every=1, patience=3,
                        batch_size=16, seed=0, optim=functools.partial(torch.optim.Adam, lr=0.5))
    metrics = run.history.history.metrics["validation_nll"]
    assert run.stopped_early and run.steps < 60
    assert run.best_validation_nll == min(v for _, v in metrics) < metrics[-1][1]
    assert validation_nll(model, x_val, y_val) == pytest.approx(run.best_validation_nll, abs=1e-5)


def test_fit_validated_trains_a_dkl_with_a_custom_score_and_refit():
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 60).unsqueeze(-1)
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(60)
    x_fit, y_fit, x_val, y_val = split_tail(x, y)
    model = DeepKernelGP(x_fit, y_fit, torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(),
                                                            torch.nn.Linear(8, 2)))
    scores = []

    def score(module):
        scores.append(validation_nll(module, x_val, y_val))
        return scores[-1]

    run = fit_validated(ExactMLLObjective(model), (x_fit, y_fit), x_val, y_val, max_steps=10, eval_every=5,
                        batch_size=len(x_fit), score=score, refit=(x, y), seed=0)
    assert len(scores) == 2 and run.best_validation_nll == min(scores)
    assert model.train_x.shape[0] == 60
    with pytest.raises(ConfigError, match="max_steps"):
        fit_validated(ExactMLLObjective(model), (x, y), x_val, y_val, max_steps=0)


def _lstm_run(checkpoint=None, callbacks=(), lr=0.1, max_steps=60, **kwargs):
    """The early-stopping GP-LSTM run above, from a fixed initialisation."""
    x, y = _windows()
    x_fit, y_fit, x_val, y_val = split_tail(x, y)
    torch.manual_seed(0)
    model = GPLSTM(x_fit, y_fit, hidden_size=6)
    objective = SemiStochasticObjective(model)
    run = fit_validated(objective, objective.dataset(), x_val, y_val, max_steps=max_steps, eval_every=1, patience=3,
                        batch_size=16, seed=0, optim=functools.partial(torch.optim.Adam, lr=lr),
                        refit=(x, y), checkpoint=checkpoint, callbacks=callbacks, **kwargs)
    return model, run


def _same_run(a, b):
    (model_a, run_a), (model_b, run_b) = a, b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert torch.equal(model_a.train_x, model_b.train_x) and torch.equal(model_a.train_y, model_b.train_y)
    assert (run_a.best_step, run_a.best_validation_nll, run_a.steps, run_a.stopped_early) == \
        (run_b.best_step, run_b.best_validation_nll, run_b.steps, run_b.stopped_early)
    hist_a, hist_b = run_a.history.history, run_b.history.history
    assert hist_a.step == hist_b.step and hist_a.loss == hist_b.loss and hist_a.metrics == hist_b.metrics


@pytest.mark.parametrize("stop_at, best_before, bad_rounds", [(11, 10, 1), (23, 21, 2)])
def test_a_preempted_run_resumes_to_the_uninterrupted_result(tmp_path, stop_at, best_before, bad_rounds):
    """SIGTERM mid-run (after a worse evaluation, so the patience counter is running), then the
    same call again: bit-identical weights, best step and history; the early-stopping state was
    in the checkpoint, which loads with weights_only=True."""
    uninterrupted = _lstm_run()
    assert uninterrupted[1].stopped_early and (uninterrupted[1].best_step, uninterrupted[1].steps) == (21, 24)
    ckpt = tmp_path / "gp.pt"
    with pytest.raises(TrainingInterrupted) as info:
        _lstm_run(ckpt, callbacks=[TermAt(stop_at)])
    assert info.value.step == stop_at
    saved = torch.load(ckpt, weights_only=True)
    evaluate, stopper, keep, term = saved["callbacks"]
    assert term is None and evaluate["state"] == {"last_step": stop_at}
    assert stopper["state"]["bad_rounds"] == bad_rounds and stopper["state"]["seen"] == stop_at
    assert keep["state"]["step"] == best_before and keep["state"]["module"] is not None
    assert keep["state"]["best"] == stopper["state"]["best"] and saved["stopped_early"] is False
    _same_run(_lstm_run(ckpt), uninterrupted)



def test_a_run_preempted_in_its_last_step_keeps_the_end_of_run_validation(tmp_path):
    """SIGTERM during the last step (7, not a multiple of eval_every): the resume has no step left and runs
    on_fit_end, whose validation (and _KeepBest's look at it) picks step 7's weights, as without the signal.
    Before, the checkpoint did not mark on_fit_end pending: the resumed run kept step 6's weights."""
    x, y = make_windows(synthetic_series(60, seed=0).float(), 6)
    x_fit, y_fit, x_val, y_val = split_tail(x, y, 0.2)

    def run(checkpoint, callbacks=()):
        torch.manual_seed(0)
        model = GPLSTM(x_fit, y_fit, hidden_size=3, num_features=2)
        objective = SemiStochasticObjective(model)
        result = fit_validated(objective, objective.dataset(), x_val, y_val, max_steps=7, eval_every=2,
                               patience=10, batch_size=8, seed=0, checkpoint=checkpoint, checkpoint_every=1,
                               callbacks=list(callbacks))
        return model, result

    uninterrupted = run(tmp_path / "whole.pt")
    assert [s for s, _ in uninterrupted[1].history.history.metrics["validation_nll"]] == [2, 4, 6, 7]
    assert uninterrupted[1].best_step == 7
    ckpt = tmp_path / "gp.pt"
    with pytest.raises(TrainingInterrupted):
        run(ckpt, [TermAt(7)])
    _same_run(run(ckpt), uninterrupted)


def test_a_killed_run_resumes_from_its_last_periodic_checkpoint(tmp_path):
    uninterrupted = _lstm_run()
    ckpt = tmp_path / "gp.pt"
    with pytest.raises(KeyboardInterrupt, match="simulated kill"):
        _lstm_run(ckpt, callbacks=[KillAt(23)], checkpoint_every=5)
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    _same_run(_lstm_run(ckpt, checkpoint_every=5), uninterrupted)


def test_resuming_a_run_that_stopped_early_returns_the_same_answer(tmp_path, capsys):
    ckpt = tmp_path / "gp.pt"
    first = _lstm_run(ckpt)
    assert first[1].stopped_early and torch.load(ckpt, weights_only=True)["stopped_early"] is True
    again = _lstm_run(ckpt, max_steps=200)  # more steps allowed: still finished, nothing runs
    assert "it had stopped early, so no step is run" in capsys.readouterr().err
    _same_run(again, first)


def test_fit_validated_passes_resume_and_overwrite(tmp_path):
    ckpt = tmp_path / "gp.pt"
    _lstm_run(ckpt, max_steps=3)
    with pytest.raises(CheckpointError, match="exists"):
        _lstm_run(ckpt, max_steps=3, resume=False)
    fresh = _lstm_run(ckpt, max_steps=2, overwrite=True)
    assert fresh[1].steps == 2 and torch.load(ckpt, weights_only=True)["step"] == 2
    with pytest.raises(CheckpointError, match="does not exist"):
        _lstm_run(tmp_path / "none.pt", resume="require")


def test_a_variational_deep_kernel_gp_is_validated_and_refit_is_refused_for_it():
    """Before, ``fit_validated`` on an :class:`SVDeepKernelGP` (whose module has ``predict``, as the docs ask)
    raised a raw ``AttributeError`` (``train_x``) before any step."""
    from hybridpgm.gp import SVDeepKernelGP

    torch.manual_seed(0)
    x, y = torch.rand(64, 3), torch.rand(64)
    gp = SVDeepKernelGP(torch.nn.Linear(3, 2), num_features=2, num_data=64, grid_size=8)
    run = fit_validated(gp.objective(), (x, y), x[:16], y[:16], max_steps=3, eval_every=1, batch_size=16, seed=0)
    assert run.best_step in (1, 2, 3) and run.best_validation_nll == pytest.approx(
        min(v for _, v in run.history.history.metrics["validation_nll"]))
    before = {k: v.clone() for k, v in gp.state_dict().items()}
    with pytest.raises(DataError, match=r"validation x has dtype torch.float64, expected torch.float32"):
        fit_validated(gp.objective(), (x, y), x[:16].double(), y[:16], max_steps=4, eval_every=4, batch_size=16)
    assert all(torch.equal(v, gp.state_dict()[k]) for k, v in before.items())  # refused before any step
    with pytest.raises(ConfigError, match="SVDeepKernelGP holds no training data"):
        fit_validated(gp.objective(), (x, y), x[:16], y[:16], max_steps=1, batch_size=16, refit=(x, y))


class _Embedded(torch.nn.Module):
    """A feature extractor of integer inputs (a category's embedding)."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 2)

    def forward(self, x):
        return self.embedding(x[..., 0])


def test_a_gp_of_integer_inputs_is_validated():
    """The review of the first variational version found integer inputs refused: x and y were both checked against
    one floating dtype (an exact GP's ``y`` against ``train_x``'s int64)."""
    from hybridpgm.gp import SVDeepKernelGP

    torch.manual_seed(0)
    x, y = torch.randint(0, 10, (32, 1)), torch.randn(32)
    exact = DeepKernelGP(x, y, _Embedded())
    assert fit_validated(ExactMLLObjective(exact), (x, y), x[:8], y[:8], max_steps=2, eval_every=1).steps == 2
    variational = SVDeepKernelGP(_Embedded(), num_features=2, num_data=32, grid_size=8)
    run = fit_validated(variational.objective(), (x, y), x[:8], y[:8], max_steps=2, eval_every=1, batch_size=16)
    assert run.steps == 2
    with pytest.raises(DataError, match="validation y"):
        fit_validated(ExactMLLObjective(exact), (x, y), x[:8], y[:8].double(), max_steps=1)
