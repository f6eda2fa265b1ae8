"""The exact marginal likelihood of DeepKernelGP (hybridpgm/gp/deep_kernel_mll.py) and its objective: training
through fit, named errors for bad batches, and the caller's random stream."""

import functools

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DataError
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective
from hybridpgm.nn import mlp
from tests.gp.deep_kernel_helpers import DEEP_KERNEL_WARNINGS, _toy

pytestmark = pytest.mark.filterwarnings(*DEEP_KERNEL_WARNINGS)


@pytest.mark.parametrize("grid_size", [None, 64])
def test_dkl_trains_through_fit_on_the_exact_marginal_likelihood(grid_size):
    torch.manual_seed(0)
    x, y = _toy(n=200, d=3, dtype=torch.float32)
    net = mlp([3, 16, 1 if grid_size else 2], activation="tanh")
    model = DeepKernelGP(x, y, net, grid_size=grid_size)
    before = -model.marginal_log_likelihood().item()
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=200, epochs=40, seed=0, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=0.05))
    after = -model.marginal_log_likelihood().item()
    assert after < before - 0.3
    assert result.history.loss["mll"][-1] < result.history.loss["mll"][0]
    x_test, y_test = _toy(n=100, d=3, seed=1, dtype=torch.float32)
    pred = model.predict(x_test)
    rmse = (pred.mean - y_test).pow(2).mean().sqrt()
    assert rmse < 0.5 * y_test.std()  # far better than predicting the mean


def test_nonfinite_training_batch_raises_a_named_data_error():
    x, y = _toy(n=40, d=2, dtype=torch.float32)
    objective = ExactMLLObjective(DeepKernelGP(x, y, grid_size=16))
    bad = y.clone()
    bad[5] = float("inf")
    with pytest.raises(DataError, match=r"y \(shape \(40,\)\) holds 1 NaN/inf"):
        objective.loss("mll", (x, bad))
    bad_x = x.clone()
    bad_x[2, 1] = float("nan")
    with pytest.raises(DataError, match=r"x \(shape \(40, 2\)\) holds 1 NaN/inf"):
        objective.loss("mll", (bad_x, y))
    with pytest.raises(DataError, match=r"y has shape \(39,\), expected \(40,\)"):
        objective.loss("mll", (x, y[:-1]))


def test_nonfinite_batch_inside_fit_raises_the_data_error_not_gpytorchs():
    """Inside fit's step the data check is deferred; if the bad batch breaks
    GPyTorch before the step's host read, the named DataError still comes first."""
    from hybridpgm.train.deferred_checks import deferring_checks

    x, y = _toy(n=40, d=2, dtype=torch.float32)
    model = DeepKernelGP(x, y, grid_size=16)
    bad_x = x.clone()
    bad_x[:, 0] = float("nan")
    with deferring_checks():
        with pytest.raises(DataError, match=r"x \(shape \(40, 2\)\) holds 40 NaN/inf"):
            model.marginal_log_likelihood(bad_x, y)


def test_mll_and_predict_above_max_cholesky_size_are_fixed_and_leave_the_global_rng_alone():
    """Above max_cholesky_size GPyTorch's CG/Lanczos estimates drew probes from the global RNG: two calls of
    marginal_log_likelihood differed and each moved the caller's stream."""
    import gpytorch

    x, y = _toy(n=60)
    model = DeepKernelGP(x, y)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10):
        a, b = model.marginal_log_likelihood(), model.marginal_log_likelihood()
        with gpytorch.settings.fast_pred_var():
            p, q = model.predict(x[:7]), model.predict(x[:7])
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a, b) and torch.equal(p.variance, q.variance) and torch.equal(p.mean, q.mean)
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(60):  # the exact value, by Cholesky
        exact = model.marginal_log_likelihood()
    with torch.no_grad():
        K = model.gp.covar_module(x).to_dense() + model.likelihood.noise * torch.eye(60, dtype=x.dtype)
        ref = torch.distributions.MultivariateNormal(model.gp.mean_module(x), K).log_prob(y) / 60
    torch.testing.assert_close(exact, ref + model.marginal_log_likelihood().new_zeros(()), rtol=1e-10, atol=1e-10)


def test_mll_in_train_mode_draws_a_fresh_dropout_mask_from_the_callers_stream():
    """marginal_log_likelihood seeded torch's global generator with 0 around the feature extractor as well as
    GPyTorch's probes: a dropout extractor in train mode had the same mask on every call, whatever the seed."""
    import pyro

    x, y = _toy(n=30, d=4, dtype=torch.float32)
    torch.manual_seed(0)
    masks = []
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    net[1].register_forward_hook(lambda module, inputs, out: masks.append(out == 0))
    model = DeepKernelGP(x, y, net)
    model.train()
    values = []
    for seed in (0, 1, 0):
        pyro.set_rng_seed(seed)
        values.append(model.marginal_log_likelihood().detach())
    assert not torch.equal(masks[-3], masks[-2]) and not torch.equal(values[0], values[1])
    assert torch.equal(masks[-3], masks[-1]) and torch.equal(values[0], values[2])  # the caller's stream decides
    model.eval()  # no dropout: a fixed function of the model and the data, whatever the caller's stream
    pyro.set_rng_seed(0)
    a = model.marginal_log_likelihood()
    pyro.set_rng_seed(1)
    assert torch.equal(a, model.marginal_log_likelihood())
