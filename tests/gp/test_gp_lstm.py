import functools
import importlib.util
from pathlib import Path

import gpytorch
import pytest
import torch

import hybridpgm
from hybridpgm.data import make_windows, synthetic_series
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, LSTMFeatures, SemiStochasticObjective

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
    "ignore:Sparse invariant checks are implicitly disabled:UserWarning",  # torch, once per process
    # torch, at the test's float() of a loss
    "ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning",
)

ROOT = Path(__file__).resolve().parents[2]


def _example():
    spec = importlib.util.spec_from_file_location("gp_lstm_example", ROOT / "examples" / "gp_lstm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _windows(n=120, window=8, seed=0):
    z = synthetic_series(n + window, period=9.0, noise=0.1, seed=seed).float()
    return make_windows(z, window)


def test_network_surrogate_gradient_is_the_exact_full_data_gradient():
    """With the whole data set as the batch, the semi-stochastic network
    gradient equals the gradient of the exact marginal likelihood."""
    torch.manual_seed(0)
    x, y = _windows(40)
    x, y = x.double(), y.double()
    model = GPLSTM(x, y, hidden_size=6, num_features=2).double()
    objective = SemiStochasticObjective(model)
    network = objective.players()["network"]
    exact = torch.autograd.grad(-model.marginal_log_likelihood(), network)
    loss = objective.loss("network", objective.dataset())
    surrogate = torch.autograd.grad(loss, network)
    for a, b in zip(exact, surrogate):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(loss, -model.marginal_log_likelihood())


def test_minibatch_network_gradients_average_to_the_full_gradient():
    torch.manual_seed(0)
    x, y = _windows(30)
    x, y = x.double(), y.double()
    model = GPLSTM(x, y, hidden_size=5, num_features=2).double()
    objective = SemiStochasticObjective(model)
    network = objective.players()["network"]
    full = torch.autograd.grad(objective.loss("network", objective.dataset()), network)
    xs, ys, idx = objective.dataset()
    parts = [torch.autograd.grad(objective.loss("network", (xs[i], ys[i], idx[i])), network)
             for i in torch.arange(30).split(10)]  # a partition into 3 mini-batches
    for k, g in enumerate(full):
        torch.testing.assert_close(sum(p[k] for p in parts) / 3, g, rtol=1e-8, atol=1e-10)


def test_gp_player_updates_only_hyperparameters_on_full_data():
    torch.manual_seed(0)
    x, y = _windows(60)
    model = GPLSTM(x, y, hidden_size=8, num_features=2)
    objective = SemiStochasticObjective(model)
    players = objective.players()
    assert {id(p) for p in players["gp"]}.isdisjoint(id(p) for p in players["network"])
    assert len(players["gp"]) + len(players["network"]) == len(list(model.parameters()))
    xs, ys, idx = objective.dataset()
    loss_small = objective.loss("gp", (xs[:5], ys[:5], idx[:5]))
    torch.testing.assert_close(loss_small, -model.marginal_log_likelihood())  # the batch does not matter
    result = hybridpgm.fit(objective, objective.dataset(), batch_size=16, epochs=10**6, max_steps=40, seed=0,
                           progress=False, optim=functools.partial(torch.optim.Adam, lr=0.02))
    assert result.history.loss["gp"][-1] < result.history.loss["gp"][0] - 0.2


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
    x, y = _windows(80)
    model = GPLSTM(x, y, hidden_size=8, num_features=2)
    objective = SemiStochasticObjective(model)
    hybridpgm.fit(objective, objective.dataset(), batch_size=16, epochs=10**6, max_steps=30, seed=0, progress=False,
                  optim=functools.partial(torch.optim.Adam, lr=0.02))
    f = model.forecast(x[-1, :, 0], steps=12, num_samples=64, generator=torch.Generator().manual_seed(0))
    assert f.samples.shape == (64, 12) and f.mean.shape == (12,)
    assert (f.lower <= f.mean).all() and (f.mean <= f.upper).all()
    width = f.upper - f.lower
    assert width[-1] > width[0]  # uncertainty grows with the horizon


def test_exact_objective_also_trains_a_gp_lstm():
    torch.manual_seed(0)
    x, y = _windows(50)
    model = GPLSTM(x, y, hidden_size=6, num_features=1, grid_size=32)
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=50, epochs=20, seed=0, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=0.02))
    assert result.history.loss["mll"][-1] < result.history.loss["mll"][0]


def test_bad_input_raises_named_errors():
    x, y = _windows(30)
    with pytest.raises(DataError, match=r"expected windows \(N, T, D\)"):
        GPLSTM(x[:, :, 0], y)
    model = GPLSTM(x, y, hidden_size=4)
    with pytest.raises(DataError, match=r"expected \(N, 8, 1\)"):
        model.predict(torch.zeros(3, 5, 1))
    with pytest.raises(DataError, match="forecast context"):
        model.forecast(torch.zeros(5), steps=3)
    bad = y.clone()
    bad[0] = float("inf")
    with pytest.raises(DataError, match="NaN/inf"):
        GPLSTM(x, bad)
    with pytest.raises(ModelSpecError, match="feature extractor with parameters"):
        SemiStochasticObjective(DeepKernelGP(x[:, :, 0], y)).players()


def test_train_gp_lstm_holds_out_a_tail_and_conditions_on_everything():
    from hybridpgm.gp import train_gp_lstm

    x, y = _windows(70)
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


def _small_objective():
    x = torch.rand(30, 6, 1, generator=torch.Generator().manual_seed(0))
    return SemiStochasticObjective(GPLSTM(x, x[:, -1, 0], hidden_size=3))


def test_semi_stochastic_steps_defer_their_checks_and_skip_the_training_inputs():
    """The network player defers two flags (finite windows, index in range); the gp player, whose input
    is the training data checked when set, none."""
    from hybridpgm.train.deferred_checks import deferring_checks

    objective = _small_objective()
    x, y, index = objective.dataset()
    with deferring_checks() as pending:
        objective.loss("gp", (x[:4], y[:4], index[:4]))
    assert pending.flags == []
    with deferring_checks() as pending:
        objective.loss("network", (x[:4], y[:4], index[:4]))
    assert len(pending.flags) == 2 and all(bool(f) for f in pending.flags)


@pytest.mark.parametrize("shift, first", [(30, 30), (-1, -1)])
def test_semi_stochastic_index_out_of_range_is_a_named_error(shift, first):
    """An index outside [0, N) is refused, naming the first bad row (a negative one used to wrap around to
    the last rows silently, one past the end was a raw IndexError)."""
    objective = _small_objective()
    x, y, index = objective.dataset()
    bad = index[:4].clone()
    bad[0] = first if shift < 0 else bad[0] + shift
    with pytest.raises(DataError, match=rf"1 row number\(s\) outside \[0, 30\) \(first: {first}\)"):
        objective.loss("network", (x[:4], y[:4], bad))


def test_semi_stochastic_index_out_of_range_inside_fit_leaves_the_network_alone():
    """Inside fit the check joins the step's host read: the network player's update is not made (the gp
    player, first in the schedule, took its full-data step)."""
    objective = _small_objective()
    x, y, index = objective.dataset()
    network = objective.model.feature_extractor
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(DataError, match=r"row number\(s\) outside \[0, 30\)"):
        hybridpgm.fit(objective, (x, y, index + 1), batch_size=30, max_steps=1, seed=0, progress=False)
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="builds a model on CUDA")
def test_windows_on_cuda_give_a_model_on_cuda():
    """Found on an H200: the LSTM was built on the CPU whatever the device of the windows, so the
    constructor's probe failed ('Input and parameter tensors are not at the same device')."""
    x, y = _windows(30)
    model = GPLSTM(x.cuda(), y.cuda(), hidden_size=4, num_features=2)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert model.predict(x[:3].cuda()).mean.device.type == "cuda"


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


def _cpu_runs_bf16_lstm() -> bool:
    """Whether torch's CPU LSTM runs under bfloat16 autocast here: oneDNN's bf16 LSTM needs AVX-512 (on an AVX2
    CPU it raises "could not create a primitive descriptor for the LSTM forward propagation primitive")."""
    lstm = torch.nn.LSTM(1, 2, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 1))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("grid", [None, 16])
def test_semi_stochastic_training_under_bf16_keeps_the_gp_in_float32(grid):
    """Under fit(precision="bf16") the LSTM runs in bfloat16 and the GP in its own dtype: a KISS-GP grid raised
    GPyTorch's 'Unsupported dtype BFloat16', and without a grid the loss was 6e-4 off float32's.  On a CPU whose
    torch cannot run the LSTM in bfloat16 (AVX2), fit refuses the precision with the extractor's named error
    instead, before any update."""
    import warnings

    torch.manual_seed(0)
    x = torch.randn(40, 5, 1)
    y = x.sum((1, 2)) * 0.3 + 0.1 * torch.randn(40)
    if not _cpu_runs_bf16_lstm():
        model = GPLSTM(x, y, hidden_size=4, **({"grid_size": grid} if grid else {}))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(DataError, match=r"under autocast to torch\.bfloat16 on cpu \(fit's precision\).*"
                                            r"precision=None"):
            hybridpgm.fit(SemiStochasticObjective(model), SemiStochasticObjective(model).dataset(), batch_size=10,
                          max_steps=1, precision="bf16", progress=False, seed=0, device="cpu")
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        return
    losses = {}
    for precision in (None, "bf16"):
        torch.manual_seed(0)
        model = GPLSTM(x, y, hidden_size=4, **({"grid_size": grid} if grid else {}))
        objective = SemiStochasticObjective(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = hybridpgm.fit(objective, objective.dataset(), batch_size=10, max_steps=1, precision=precision,
                                   progress=False, seed=0, device="cpu")
        losses[precision] = result.history.loss["gp"][0]
    assert losses["bf16"] == pytest.approx(losses[None], abs=2e-4)


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


def _count_full_passes(objective, n):
    """A list that the extractor's forward appends each call's batch rows to, split as (full, batch) (a wrapper of
    the instance's ``forward``, not a forward hook: a module with a hook is not reused, as it may do anything)."""
    rows = []
    extractor = objective.model.feature_extractor
    forward = extractor.forward

    def counted(x, *args, **kwargs):
        rows.append(x.shape[0])
        return forward(x, *args, **kwargs)

    extractor.forward = counted
    return lambda: (sum(r == n for r in rows), sum(r != n for r in rows))


def test_semi_stochastic_step_runs_the_full_data_lstm_once():
    """Both players need the features of all windows; the "network" player ran the LSTM over them again with the
    weights the "gp" player had just used (6 full-data passes in 3 steps, now 3; the mini-batch passes stay)."""
    objective = _small_objective()
    passes = _count_full_passes(objective, 30)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
    assert passes() == (3, 3)


class _RecomputingLSTMFeatures(LSTMFeatures):
    """An extractor type the reuse does not know (matched exactly): its features are computed by each player."""


def test_reused_features_train_bit_for_bit_as_recomputed_ones():
    """The run with the features reused (3 full-data passes in 3 steps; 6 before the reuse) equals, bit for bit,
    the same run whose extractor is of a type not known to be deterministic (both players compute them, 6 passes).
    The equality alone is a guard: it held before the reuse too."""
    runs = []
    for recompute in (False, True):
        torch.manual_seed(0)  # the same initial weights for both runs (the LSTM draws them from the global stream)
        objective = _small_objective()
        if recompute:
            objective.model.feature_extractor.__class__ = _RecomputingLSTMFeatures
        passes = _count_full_passes(objective, 30)
        result = hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
        runs.append((result.history.loss, [p.detach().clone() for p in objective.model.parameters()]))
        assert passes()[0] == (6 if recompute else 3)
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_a_dropout_extractor_in_train_mode_is_run_by_both_players():
    """A second pass of a dropout network draws another mask (and moves the global stream), so its features are
    not reused (a guard: as before); in eval mode they are (before: computed twice there too)."""
    torch.manual_seed(0)
    x = torch.randn(30, 3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    objective = SemiStochasticObjective(DeepKernelGP(x, x[:, 0], net))
    passes = _count_full_passes(objective, 30)
    batch = tuple(t[:5] for t in objective.dataset())
    objective.loss("gp", batch)
    objective.loss("network", batch)
    assert passes()[0] == 2
    net.eval()
    objective.loss("gp", batch)
    objective.loss("network", batch)
    assert passes()[0] == 3


def test_features_are_computed_anew_after_the_network_or_the_data_changed():
    """Between the players, an in-place edit of a weight, a mode change or new training data make the "network"
    player compute the features again (its gradient is then the one at the current weights)."""
    objective = _small_objective()
    model = objective.model
    passes = _count_full_passes(objective, 30)
    batch = tuple(t[:5] for t in objective.dataset())
    objective.loss("gp", batch)
    with torch.no_grad():
        model.feature_extractor.head.bias.add_(0.5)
    loss = objective.loss("network", batch)
    assert passes()[0] == 2
    objective.train_step_end(0)
    torch.testing.assert_close(loss, -model.marginal_log_likelihood())  # a full-data pass of its own (3)
    objective.loss("gp", batch)
    model.feature_extractor.lstm.eval()
    objective.loss("network", batch)
    assert passes()[0] == 5
    objective.train_step_end(1)
    objective.loss("gp", batch)
    x, y = model.training_data()
    model.set_train_data(x.clone(), y)
    objective.loss("network", batch)
    assert passes()[0] == 7


def _moved(objective, scale=0.3):
    """Move every weight of the objective's extractor in place (as an optimizer's step does)."""
    with torch.no_grad():
        for p in objective.model.feature_extractor.parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))


def test_network_loss_outside_fit_follows_weights_moved_after_the_first_call():
    """The network player's full loss and G are kept between its calls only while the weights are those they were
    computed at: after an in-place step of the extractor, the loss and its gradient are those of a fresh objective
    (they were the old weights' loss and G: 1.3195 for 1.3049, gradients off by up to 0.09)."""
    torch.manual_seed(0)
    x, y = _windows(40)
    objective = SemiStochasticObjective(GPLSTM(x, y, hidden_size=3, num_features=2))
    batch = objective.dataset()
    objective.loss("gp", batch)
    before = objective.loss("network", batch)
    _moved(objective)
    after = objective.loss("network", batch)
    fresh = SemiStochasticObjective(objective.model)
    expected = fresh.loss("network", batch)
    assert float(after) != float(before)
    assert float(after) == float(expected)
    network = objective.players()["network"]
    for a, b in zip(torch.autograd.grad(after, network), torch.autograd.grad(expected, network)):
        assert torch.equal(a, b)


def _network_losses_in_one_step(network_optimizer):
    """One ``fit`` step of a small float64 GP-LSTM with Adam for the gp player and ``network_optimizer`` for the
    network player: the model, the objective, its data, the network's parameters, and each network-player loss
    with the weights it was computed at."""
    torch.manual_seed(0)
    x, y = _windows(40)
    model = GPLSTM(x, y, hidden_size=3, num_features=2).double()
    objective = SemiStochasticObjective(model)
    data = objective.dataset()
    network = objective.players()["network"]
    seen, original = [], objective.loss

    def spy(player, batch):
        out = original(player, batch)
        if player == "network":
            seen.append((out.detach().clone(), [p.detach().clone() for p in network]))
        return out

    objective.loss = spy
    hybridpgm.fit(objective, data, batch_size=x.shape[0], max_steps=1, progress=False, seed=0,
                  optim={"gp": functools.partial(torch.optim.Adam, lr=0.01), "network": network_optimizer})
    return model, data, network, seen


def test_network_player_under_lbfgs_sees_the_loss_at_the_weights_it_tries():
    """L-BFGS for the "network" player re-runs the loss at the weights of its line search, each evaluation an
    update of its own: each one reports the full-data loss at those weights (the first one's, kept, was reported
    again, and L-BFGS stopped at its second evaluation with an unchanged loss)."""
    model, data, network, seen = _network_losses_in_one_step(
        functools.partial(torch.optim.LBFGS, lr=1.0, max_iter=4))
    assert len(seen) > 2
    assert len({float(loss) for loss, _ in seen}) == len(seen)
    for loss, weights in seen:  # the hyperparameters are those after the gp player's step throughout
        with torch.no_grad():
            for p, w in zip(network, weights):
                p.copy_(w)
        torch.testing.assert_close(loss, SemiStochasticObjective(model).loss("network", data).detach())


def test_micro_batches_of_one_network_update_share_one_full_data_gradient():
    """Under accumulate=2 the network player's two micro-batches share one full-data loss and G a step (the gp
    player's two micro-batches take one each): 9 full-data GP losses in 3 steps, not 12.  A guard: as before."""
    objective = _small_objective()
    calls, original = [], objective._full_loss
    objective._full_loss = lambda h: calls.append(1) or original(h)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, accumulate=2, max_steps=3, seed=0, progress=False)
    assert len(calls) == 9


def test_network_loss_reuses_its_full_data_gradient_while_nothing_changed():
    """Outside fit, calls at unchanged weights share one computation of G (the kept features' pass included); an
    edit of a GP hyperparameter, a mode change or new training data make the next call compute it again."""
    objective = _small_objective()
    model = objective.model
    batch = tuple(t[:5] for t in objective.dataset())
    calls = []
    original = objective._full_loss
    objective._full_loss = lambda h: calls.append(1) or original(h)
    first = objective.loss("network", batch)
    assert float(objective.loss("network", batch)) == float(first) and len(calls) == 1
    with torch.no_grad():
        model.likelihood.raw_noise.add_(0.5)
    assert float(objective.loss("network", batch)) != float(first) and len(calls) == 2
    model.feature_extractor.lstm.eval()
    objective.loss("network", batch)
    assert len(calls) == 3
    x, y = model.training_data()
    model.set_train_data(x.clone(), y)
    objective.loss("network", batch)
    objective.loss("network", batch)
    assert len(calls) == 4


class _DataWritingClosureOptimizer(torch.optim.Optimizer):
    """A closure optimizer that steps through ``tensor.data``, as a fused one does: no version counter moves."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure):
        closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"])
        return closure()


def test_a_closure_evaluation_after_a_step_that_moves_no_version_counter_is_at_the_new_weights():
    """The second evaluation of the closure runs at weights moved through ``tensor.data``: its loss is the full-data
    loss there -- neither the first evaluation's G (kept by update, not by version) nor the gp player's features
    (read once by the network player) are used again."""
    model, data, network, seen = _network_losses_in_one_step(functools.partial(_DataWritingClosureOptimizer, lr=0.5))
    assert len(seen) == 2
    loss, weights = seen[1]
    with torch.no_grad():
        for p, w in zip(network, weights):
            p.copy_(w)
    torch.testing.assert_close(loss, SemiStochasticObjective(model).loss("network", data).detach())
    assert float(loss) != float(seen[0][0])


def test_an_extractor_with_a_forward_hook_is_run_by_both_players():
    """Found by a review: an extractor under ``nn.utils.spectral_norm`` (a forward pre-hook that advances its power
    iteration at every call in train mode) or with any hook counted as deterministic, so the second full-data pass,
    and the hook's work in it, was skipped and training changed; a module with a hook is now run by both."""
    objective = _small_objective()
    passes = _count_full_passes(objective, 30)
    objective.model.feature_extractor.register_forward_pre_hook(lambda module, args: None)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
    assert passes() == (6, 3)
