"""``GPLSTM.forecast``'s sampled paths (hybridpgm.gp.gp_lstm_forecast): their shapes, spread and coverage, the
horizon they need, their generator and the caller's predictive variances."""

import functools
import importlib.util
from pathlib import Path

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import ModelSpecError
from hybridpgm.gp import GPLSTM, SemiStochasticObjective
from tests.gp.gp_lstm_helpers import GP_LSTM_WARNINGS, windows

pytestmark = pytest.mark.filterwarnings(*GP_LSTM_WARNINGS)


ROOT = Path(__file__).resolve().parents[2]


def _example():
    spec = importlib.util.spec_from_file_location("gp_lstm_example", ROOT / "examples" / "gp_lstm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gp_lstm_forecast_coverage_on_held_out_sunspots():
    """The forecasting example's 95% intervals cover 85-99% of the held-out
    one-step-ahead targets (seeded; the LSTM baseline runs in test_examples).  A long statistical check (the
    example's full training, 17 s of the default run), so ``slow``: the default run keeps the example end to end
    at tiny sizes (``tests/test_examples.py``) and :func:`test_multi_step_forecast_shapes_and_spread`."""
    example = _example()
    report = example.main(example.parse_args(["--quiet", "--device", "cpu", "--seed", "0", "--no-compare-lstm"]))
    assert 0.85 <= report["gp_lstm"]["coverage"] <= 0.99
    assert report["gp_lstm"]["rmse"] < 30  # sunspot units; predicting the train mean gives ~ 60


def test_multi_step_forecast_shapes_and_spread():
    torch.manual_seed(0)
    x, y = windows(80)
    model = GPLSTM(x, y, hidden_size=8, num_features=2)
    objective = SemiStochasticObjective(model)
    hybridpgm.fit(objective, objective.dataset(), batch_size=16, epochs=10**6, max_steps=30, seed=0, progress=False,
                  optim=functools.partial(torch.optim.Adam, lr=0.02))
    f = model.forecast(x[-1, :, 0], steps=12, num_samples=64, generator=torch.Generator().manual_seed(0))
    assert f.samples.shape == (64, 12) and f.mean.shape == (12,)
    assert (f.lower <= f.mean).all() and (f.mean <= f.upper).all()
    width = f.upper - f.lower
    assert width[-1] > width[0]  # uncertainty grows with the horizon


def test_forecast_needs_a_model_of_the_next_value_and_the_horizon_is_saved(tmp_path):
    """GPLSTM.forecast fed each prediction back as the next value whatever the targets were: a model of the value
    3 steps ahead (make_windows(..., horizon=3)) forecast silently wrong."""
    from hybridpgm.errors import ConfigError

    z = synthetic_series(60, period=9.0, noise=0.1, seed=0).float()
    x, y = make_windows(z, 8, horizon=3)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4, horizon=3)
    assert model.horizon == 3
    with pytest.raises(ConfigError, match=r"horizon=3.*model.predict"):
        model.forecast(z[-8:], steps=2, num_samples=4)
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "h3.pt"))
    assert loaded.horizon == 3
    with pytest.raises(ConfigError, match=r"horizon=3"):
        loaded.forecast(z[-8:], steps=2, num_samples=4)
    assert torch.equal(loaded.predict(x[:3]).mean, model.predict(x[:3]).mean)  # h steps ahead, directly
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ModelSpecError, match="GPLSTM horizon"):
            GPLSTM(x, y, hidden_size=4, horizon=bad)
    x1, y1 = make_windows(z, 8)
    assert GPLSTM(x1, y1, hidden_size=4).forecast(z[-8:], steps=2, num_samples=4).samples.shape == (4, 2)


def test_forecast_above_max_cholesky_size_is_reproducible_and_leaves_the_global_rng_alone():
    """Above 800 windows GPyTorch's Lanczos variances (fast_pred_var) drew from the global RNG: forecast with a
    seeded generator differed between calls and moved the caller's stream."""
    z = synthetic_series(908, seed=0).float()
    x, y = make_windows(z, 8)
    assert x.shape[0] == 900
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4)

    def run():
        with gpytorch.settings.fast_pred_var():
            return model.forecast(z[-8:], steps=3, num_samples=6, generator=torch.Generator().manual_seed(5))

    torch.manual_seed(123)
    rng = torch.get_rng_state()
    first = run()
    assert torch.equal(torch.get_rng_state(), rng)
    torch.manual_seed(999)
    assert torch.equal(run().samples, first.samples)


def test_forecast_keeps_the_callers_exact_predictive_variances():
    """``forecast`` turned on ``fast_pred_var`` itself: above ``max_cholesky_size`` (1294 windows) its first step's
    standard deviation was LOVE's, 1.9% below :meth:`predict`'s at the same window, whatever the caller set.  Each
    draw is ``mean + sd * noise`` with the noise from a known generator, so two draws recover the step's mean and
    standard deviation, which must be ``predict``'s (the same GPyTorch computation: agreement to rounding).  The
    caller's ``max_cholesky_size`` is lowered to 100 so that 200 windows are above it (1300 windows above the default
    800 took five times as long; the old code's sd was 0.8% off here)."""
    z = synthetic_series(206, seed=0).double()
    x, y = make_windows(z, window=6)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=4, num_features=2)
    model.likelihood.noise = torch.tensor(1e-4, dtype=torch.float64)
    context = z[-6:]
    with gpytorch.settings.max_cholesky_size(100), gpytorch.settings.eval_cg_tolerance(1e-12):
        # both solve by CG here: to rounding, not to CG's 1e-2
        assert x.shape[0] > gpytorch.settings.max_cholesky_size.value()
        draws = model.forecast(context, steps=1, num_samples=2,
                               generator=torch.Generator().manual_seed(1)).samples[:, 0]
        predicted = model.predict(context.reshape(1, 6, 1))
    noise = torch.randn(2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sd = (draws[0] - draws[1]) / (noise[0] - noise[1])
    mean = draws[0] - sd * noise[0]
    assert mean.item() == pytest.approx(predicted.mean.item(), rel=1e-9)
    assert sd.item() == pytest.approx(predicted.stddev.item(), rel=1e-7)
