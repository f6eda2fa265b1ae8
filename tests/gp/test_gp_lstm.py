"""GP-LSTM (hybridpgm.gp.gp_lstm): the semi-stochastic objective's gradients and its checks, the exact objective,
the named errors of bad windows, the device and the precision of training.  Its forecasts are tested in
test_gp_lstm_forecast*.py, its recipe in test_gp_lstm_recipe.py, the reuse of its full-data features in
test_gp_lstm_feature_reuse.py."""

import functools

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, SemiStochasticObjective
from tests.gp.gp_lstm_helpers import GP_LSTM_WARNINGS, small_objective, windows

pytestmark = pytest.mark.filterwarnings(*GP_LSTM_WARNINGS)


def test_network_surrogate_gradient_is_the_exact_full_data_gradient():
    """With the whole data set as the batch, the semi-stochastic network
    gradient equals the gradient of the exact marginal likelihood."""
    torch.manual_seed(0)
    x, y = windows(40)
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
    x, y = windows(30)
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
    x, y = windows(60)
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


def test_exact_objective_also_trains_a_gp_lstm():
    torch.manual_seed(0)
    x, y = windows(50)
    model = GPLSTM(x, y, hidden_size=6, num_features=1, grid_size=32)
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=50, epochs=20, seed=0, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=0.02))
    assert result.history.loss["mll"][-1] < result.history.loss["mll"][0]


def test_bad_input_raises_named_errors():
    x, y = windows(30)
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


def test_semi_stochastic_steps_defer_their_checks_and_skip_the_training_inputs():
    """The network player defers two flags (finite windows, index in range); the gp player, whose input
    is the training data checked when set, none."""
    from hybridpgm.train.deferred_checks import deferring_checks

    objective = small_objective()
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
    objective = small_objective()
    x, y, index = objective.dataset()
    bad = index[:4].clone()
    bad[0] = first if shift < 0 else bad[0] + shift
    with pytest.raises(DataError, match=rf"1 row number\(s\) outside \[0, 30\) \(first: {first}\)"):
        objective.loss("network", (x[:4], y[:4], bad))


def test_semi_stochastic_index_out_of_range_inside_fit_leaves_the_network_alone():
    """Inside fit the check joins the step's host read: the network player's update is not made (the gp
    player, first in the schedule, took its full-data step)."""
    objective = small_objective()
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
    x, y = windows(30)
    model = GPLSTM(x.cuda(), y.cuda(), hidden_size=4, num_features=2)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert model.predict(x[:3].cuda()).mean.device.type == "cuda"


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
