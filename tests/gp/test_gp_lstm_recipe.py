"""The GP-LSTM recipe :func:`~hybridpgm.gp.train_gp_lstm` (hybridpgm.gp.gp_lstm_recipe): a held-out tail, early
stopping, the refit on every window, and its calibration on sunspots."""

import pytest

from tests.gp.gp_lstm_helpers import GP_LSTM_WARNINGS, windows

pytestmark = pytest.mark.filterwarnings(*GP_LSTM_WARNINGS)


def test_train_gp_lstm_holds_out_a_tail_and_conditions_on_everything():
    from hybridpgm.gp import train_gp_lstm

    x, y = windows(70)
    model, run = train_gp_lstm(x, y, hidden_size=4, max_steps=6, eval_every=2, patience=5, seed=0)
    assert model.train_x.shape[0] == x.shape[0]  # refit on training + validation windows
    assert run.best_step in (2, 4, 6) and run.steps == 6 and not run.stopped_early
    metrics = run.history.history.metrics["validation_nll"]
    assert [s for s, _ in metrics] == [2, 4, 6]
    assert run.best_validation_nll == min(v for _, v in metrics)


@pytest.mark.slow
def test_gp_lstm_default_recipe_is_calibrated_on_held_out_sunspots():
    """The default recipe (validation tail, early stopping) on square-root sunspots: the 95%
    one-step-ahead intervals cover 85-99% of the last 60 years, never seen in training."""
    from hybridpgm.data import load_series, make_windows
    from hybridpgm.gp import calibration, train_gp_lstm

    values = load_series("sunspots").values.sqrt()  # the variance-stabilising transform of Tong (1990)
    num_test, window = 60, 10
    head = values[:-num_test]
    z = ((values - head.mean()) / head.std()).float()
    x, y = make_windows(z[:-num_test], window)
    x_test, y_test = make_windows(z[-(num_test + window):], window)
    model, run = train_gp_lstm(x, y, seed=0)
    pred = model.predict(x_test)
    report = calibration(pred.mean, pred.variance.sqrt(), y_test)
    print(run, report)
    assert run.stopped_early
    assert 0.85 <= report["coverage_95"] <= 0.99
